package image

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/denhq/den/internal/errdefs"
)

// BaseOptions configures BuildBase. The zero value builds the default image.
type BaseOptions struct {
	// Name of the image; default "base".
	Name string
	// Suite is the Debian release; default "bookworm".
	Suite string
	// Mirror is the Debian mirror URL; default the host's apt source for
	// Suite (so a host behind a local mirror uses it), else deb.debian.org.
	Mirror string
	// Packages are installed on top of minbase; default BasePackages.
	Packages []string
	// OptionalPackages are installed when the mirror has them; default
	// python-is-python3 (so `python` runs python3).
	OptionalPackages []string
	// AptDir is where the host's apt sources are read; default /etc/apt.
	AptDir string
	// Debootstrap is the debootstrap binary; default found in PATH.
	Debootstrap string
}

// BasePackages are the packages of the default image, beyond minbase.
var BasePackages = []string{"bash", "coreutils", "python3", "nodejs", "git", "curl", "ca-certificates", "procps", "passwd", "sudo", "rsync"}

func (o *BaseOptions) setDefaults() error {
	if o.Name == "" {
		o.Name = "base"
	}
	if o.Suite == "" {
		o.Suite = "bookworm"
	}
	if o.AptDir == "" {
		o.AptDir = "/etc/apt"
	}
	if o.Mirror == "" {
		o.Mirror = hostMirror(o.AptDir, o.Suite)
	}
	if o.Packages == nil {
		o.Packages = BasePackages
	}
	if o.OptionalPackages == nil {
		o.OptionalPackages = []string{"python-is-python3"}
	}
	if o.Debootstrap == "" {
		p, err := exec.LookPath("debootstrap")
		if err != nil {
			return errdefs.Wrap(errdefs.FailedPrecondition, err, "install debootstrap")
		}
		o.Debootstrap = p
	}
	return nil
}

// BuildBase builds the default image (Debian minbase with bash, python3,
// nodejs, git, curl; user "user", uid 1000, home /home/user, shell bash) with
// debootstrap from a Debian mirror and records it. It takes minutes; when an
// image called opts.Name exists it is returned at once. progress receives
// the phases "retrieving", "validating", "extracting", "unpacking",
// "configuring" (debootstrap's work, per package) and "importing"; it may be
// nil. Cancelling ctx kills debootstrap and leaves nothing behind.
//
// The image's User is "" (root): the guest agent runs as root and starts
// commands as "user" itself, as E2B's envd does. WorkingDir is /home/user.
func BuildBase(ctx context.Context, s *Store, opts BaseOptions, progress func(Progress)) (*Image, error) {
	if progress == nil {
		progress = func(Progress) {}
	}
	if err := opts.setDefaults(); err != nil {
		return nil, fmt.Errorf("build base image: %w", err)
	}
	if img, err := s.Get(opts.Name); err == nil {
		return img, nil
	}
	work, err := os.MkdirTemp(s.tmpDir(), "base-")
	if err != nil {
		return nil, fmt.Errorf("build base image: %w", err)
	}
	defer s.removeWork(work)
	rootfs := filepath.Join(work, "rootfs")
	if err := bootstrap(ctx, opts, rootfs, progress); err != nil {
		return nil, fmt.Errorf("build base image: %w", err)
	}
	for _, step := range baseSteps {
		if err := step.run(ctx, rootfs); err != nil {
			return nil, fmt.Errorf("build base image: %s: %w", step.name, err)
		}
	}
	progress(Progress{Phase: "importing", Total: 1})
	cfg := Config{Env: []string{DefaultPath, "LANG=C.UTF-8"}, WorkingDir: "/home/user"}
	img, err := s.ImportDir(ctx, rootfs, opts.Name, cfg)
	if err != nil {
		return nil, fmt.Errorf("build base image: %w", err)
	}
	progress(Progress{Phase: "importing", Current: 1, Total: 1})
	return img, nil
}

// bootstrap runs debootstrap into rootfs; when the mirror lacks optional
// packages it runs again without them.
func bootstrap(ctx context.Context, opts BaseOptions, rootfs string, progress func(Progress)) error {
	pkgs := append(slices.Clone(opts.Packages), opts.OptionalPackages...)
	err := debootstrap(ctx, opts, pkgs, rootfs, progress)
	var missing *missingDebsError
	if !errors.As(err, &missing) {
		return err
	}
	for _, p := range missing.pkgs {
		if !slices.Contains(opts.OptionalPackages, p) {
			return err
		}
	}
	if err := removeTree(rootfs); err != nil {
		return err
	}
	pkgs = slices.DeleteFunc(pkgs, func(p string) bool { return slices.Contains(missing.pkgs, p) })
	return debootstrap(ctx, opts, pkgs, rootfs, progress)
}

type missingDebsError struct {
	pkgs []string
	err  error
}

func (e *missingDebsError) Error() string {
	return fmt.Sprintf("packages not on the mirror: %s: %v", strings.Join(e.pkgs, " "), e.err)
}

func (e *missingDebsError) Unwrap() error { return e.err }

func debootstrap(ctx context.Context, opts BaseOptions, pkgs []string, rootfs string, progress func(Progress)) error {
	cmd := exec.CommandContext(ctx, opts.Debootstrap, "--variant=minbase",
		"--include="+strings.Join(pkgs, ","), opts.Suite, rootfs, opts.Mirror)
	// debootstrap runs dpkg, wget and chroot: kill the whole group on cancel.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("debootstrap: %w", err)
	}
	lines := make(chan []string, 1)
	go func() { lines <- trackDebootstrap(pr, progress) }()
	err := cmd.Wait()
	pw.Close()
	tail := <-lines
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return debootstrapError(err, tail)
	}
	return nil
}

// debootstrapError explains a failed run with its last output lines.
func debootstrapError(err error, tail []string) error {
	for _, l := range tail {
		if rest, ok := strings.CutPrefix(l, "E: Couldn't find these debs:"); ok {
			return &missingDebsError{pkgs: strings.Fields(rest), err: err}
		}
	}
	return fmt.Errorf("debootstrap: %w: %s", err, strings.Join(tail, " | "))
}

// debootstrapAggregates are "I: <verb> <detail>" lines that are not a package.
var debootstrapAggregates = []string{"InRelease", "Release", "Release.gpg", "Packages", "required packages", "the base system", "base packages"}

// trackDebootstrap turns debootstrap's output into progress events and
// returns its last lines, for error messages. It reads r to the end.
func trackDebootstrap(r io.Reader, progress func(Progress)) []string {
	var tail []string
	counts := map[string]int64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		tail = append(tail, line)
		if len(tail) > 10 {
			tail = tail[1:]
		}
		verb, detail, ok := strings.Cut(strings.TrimPrefix(line, "I: "), " ")
		phase := strings.ToLower(verb)
		if !strings.HasPrefix(line, "I: ") || !ok || !slices.Contains([]string{"retrieving", "validating", "extracting", "unpacking", "configuring"}, phase) {
			continue
		}
		detail = strings.TrimSuffix(detail, "...")
		if slices.Contains(debootstrapAggregates, detail) {
			continue
		}
		counts[phase]++
		// The number of packages is known once they are all retrieved.
		var total int64
		if phase != "retrieving" {
			total = max(counts["retrieving"], counts[phase])
		}
		progress(Progress{Phase: phase, Current: counts[phase], Total: total, Detail: strings.Fields(detail)[0]})
	}
	io.Copy(io.Discard, r) // a line longer than the scanner's buffer stopped it
	return tail
}
