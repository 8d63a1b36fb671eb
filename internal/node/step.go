package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"github.com/denhq/den/api/envd/filesystem"
	"github.com/denhq/den/api/envd/process"
	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
)

const (
	// stepIDPrefix starts the driver IDs of build-step sandboxes (server
	// sandbox IDs have no "-"); Recover destroys those a crash left behind.
	stepIDPrefix = "build-"
	// Defaults of StepSpec.CPUs and StepSpec.MemoryMB.
	defaultStepCPUs     = 2
	defaultStepMemoryMB = 2048
	// stepDestroyTimeout bounds the destruction of a step's sandbox, which
	// runs even when the step's context has ended.
	stepDestroyTimeout = 2 * time.Minute
)

// StepSpec is one command run in a throw-away sandbox whose root filesystem
// writes land in Upper: a Dockerfile RUN step.
type StepSpec struct {
	// Layers are the read-only layer directories, topmost first.
	Layers []string
	// Upper is an existing, empty host directory on the driver's state
	// filesystem. It receives the step's root filesystem changes in
	// overlayfs upper format (see driver.Spec.UpperDir) and is the caller's
	// once RunStep returns.
	Upper string
	// Args is the command line; Args[0] is looked up in the PATH of Env.
	Args []string
	// Env is the process environment, "K=V" entries. The guest adds PATH
	// (the usual default), HOME, USER and LOGNAME when Env lacks them.
	Env []string
	// Dir is the absolute working directory; it is created (owned by root,
	// mode 0755) when missing, as runc does. Empty means /.
	Dir string
	// User runs the process: a name or uid, optionally with ":group" (a name
	// or gid), as Docker's USER. Empty means root.
	User string
	// Network is the step's network: only "none" (loopback only) for now.
	Network string
	// Output receives stdout and stderr as they come, interleaved in the
	// order the guest reads them (two pipes: a line on stderr may overtake
	// one just written to stdout). Nil discards them.
	Output io.Writer
	// CPUs and MemoryMB limit the sandbox; 0 means 2 CPUs and 2048 MiB.
	CPUs     float64
	MemoryMB int64
}

// validate checks spec. All errors are InvalidArgument.
func (spec *StepSpec) validate() error {
	switch {
	case len(spec.Layers) == 0:
		return errdefs.New(errdefs.InvalidArgument, "run step: no layers")
	case spec.Upper == "":
		return errdefs.New(errdefs.InvalidArgument, "run step: no upper dir")
	case len(spec.Args) == 0 || spec.Args[0] == "":
		return errdefs.New(errdefs.InvalidArgument, "run step: empty command")
	case spec.Network != "none":
		return errdefs.New(errdefs.InvalidArgument, "run step: network %q is not supported (only \"none\")", spec.Network)
	case spec.Dir != "" && !filepath.IsAbs(spec.Dir):
		return errdefs.New(errdefs.InvalidArgument, "run step: working directory %q is not absolute", spec.Dir)
	case spec.CPUs < 0 || spec.MemoryMB < 0:
		return errdefs.New(errdefs.InvalidArgument, "run step: negative resource limit")
	}
	_, err := envMap(spec.Env)
	return err
}

// envMap turns "K=V" entries into a map; a later entry wins.
func envMap(env []string) (map[string]string, error) {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, errdefs.New(errdefs.InvalidArgument, "run step: env entry %q: want K=V", kv)
		}
		m[k] = v
	}
	return m, nil
}

// driverSpec is the sandbox of a step: its layers with Upper on top, the
// step's user as the guest's default, no disk quota (none applies to an
// UpperDir).
func (spec *StepSpec) driverSpec(id string) driver.Spec {
	cpus, mem := spec.CPUs, spec.MemoryMB
	if cpus == 0 {
		cpus = defaultStepCPUs
	}
	if mem == 0 {
		mem = defaultStepMemoryMB
	}
	return driver.Spec{
		ID:       id,
		Image:    driver.Image{Ref: "build-step", Layers: spec.Layers, User: spec.User},
		CPUs:     cpus,
		MemoryMB: mem,
		UpperDir: spec.Upper,
		Network:  networkOn(), // RUN steps fetch packages, as with docker build
	}
}

// RunStep runs spec.Args in a new sandbox of spec.Layers whose root
// filesystem changes land in spec.Upper, streams its output to spec.Output
// and returns its exit status: the exit code, or 128+n for a process
// killed by signal n. A non-zero status is not an error. The sandbox is
// not a user sandbox: no record names it, it gets no main process, and it
// is destroyed before RunStep returns, also when ctx ends (the process is
// then killed and the error is Canceled); spec.Upper stays.
//
// Errors, with status -1: a bad spec (InvalidArgument), the sandbox
// failing to start, a command that cannot start (InvalidArgument from the
// guest: missing binary, unknown user), a failing Output writer. A failed
// destroy is an error too, joined to the step's own outcome.
func (n *Node) RunStep(ctx context.Context, spec StepSpec) (exitCode int, err error) {
	if err := spec.validate(); err != nil {
		return -1, err
	}
	id := stepIDPrefix + randomHex(6)
	begin := time.Now()
	defer func() {
		if derr := n.destroyStep(ctx, id); derr != nil {
			err = errors.Join(err, derr)
		}
		// err is the caller's to handle; the log only says it happened.
		n.log.Info("build step done", "step", id, "exit_code", exitCode, "failed", err != nil, "took", time.Since(begin))
	}()
	if _, err := n.stepDriver().Create(ctx, spec.driverSpec(id)); err != nil {
		return -1, fmt.Errorf("run step: %w", err)
	}
	return n.runStepProcess(ctx, id, &spec)
}

// destroyStep destroys step sandbox id on a context that outlives ctx.
func (n *Node) destroyStep(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stepDestroyTimeout)
	defer cancel()
	if err := n.stepDriver().Destroy(ctx, id); err != nil {
		return fmt.Errorf("run step: destroy sandbox %s: %w", id, err)
	}
	return nil
}

// runStepProcess creates the working directory, starts the step's process
// and follows it to its end.
func (n *Node) runStepProcess(ctx context.Context, id string, spec *StepSpec) (int, error) {
	hc := n.guestHTTP(id)
	dir := spec.Dir
	if dir == "" {
		dir = "/"
	} else if err := makeWorkDir(ctx, hc, dir); err != nil {
		return -1, err
	}
	env, _ := envMap(spec.Env) // validated
	req := connect.NewRequest(&process.StartRequest{
		Process: &process.ProcessConfig{Cmd: spec.Args[0], Args: spec.Args[1:], Envs: env, Cwd: &dir},
	})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := guestProcessClient(hc).Start(ctx, req)
	if err != nil {
		return -1, stepError(ctx, err)
	}
	defer func() {
		cancel() // first: Close would otherwise read the stream to its end
		_ = stream.Close()
	}()
	out := spec.Output
	if out == nil {
		out = io.Discard
	}
	for stream.Receive() {
		ev := stream.Msg().GetEvent()
		if err := writeOutput(out, ev.GetData()); err != nil {
			return -1, fmt.Errorf("run step: write output: %w", err)
		}
		if end := ev.GetEnd(); end != nil {
			return exitStatus(end)
		}
	}
	if err := stream.Err(); err != nil {
		return -1, stepError(ctx, err)
	}
	return -1, errdefs.New(errdefs.Unavailable, "run step: the process stream ended without an end event")
}

// makeWorkDir creates dir in the sandbox as root, unless it exists.
func makeWorkDir(ctx context.Context, hc connect.HTTPClient, dir string) error {
	req := connect.NewRequest(&filesystem.MakeDirRequest{Path: dir})
	actAs(req.Header(), "root")
	_, err := guestFilesystemClient(hc).MakeDir(ctx, req)
	if err != nil && connect.CodeOf(err) != connect.CodeAlreadyExists {
		return stepError(ctx, fmt.Errorf("create working directory %s: %w", dir, err))
	}
	return nil
}

// writeOutput writes what d carries (stdout, stderr or terminal output).
func writeOutput(w io.Writer, d *process.ProcessEvent_DataEvent) error {
	for _, b := range [][]byte{d.GetStdout(), d.GetStderr(), d.GetPty()} {
		if len(b) == 0 {
			continue
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// stepError classifies an error of a call to the step's guest: ctx's own
// error when it ended, else the guest's kind.
func stepError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return errdefs.Wrap(errdefs.Canceled, ctx.Err(), "run step")
	}
	return errdefs.Wrap(connectKind(err), err, "run step")
}

// connectKind maps the Connect code of a guest error to an errdefs kind.
func connectKind(err error) errdefs.Kind {
	switch connect.CodeOf(err) {
	case connect.CodeInvalidArgument:
		return errdefs.InvalidArgument
	case connect.CodeNotFound:
		return errdefs.NotFound
	case connect.CodePermissionDenied:
		return errdefs.PermissionDenied
	case connect.CodeFailedPrecondition:
		return errdefs.FailedPrecondition
	case connect.CodeResourceExhausted:
		return errdefs.ResourceExhausted
	case connect.CodeCanceled, connect.CodeDeadlineExceeded:
		return errdefs.Canceled
	}
	return errdefs.Unavailable
}

// exitStatus is the shell-style status of an ended process: its exit code,
// or 128+n when signal n killed it.
func exitStatus(end *process.ProcessEvent_EndEvent) (int, error) {
	if end.GetExited() {
		return int(end.GetExitCode()), nil
	}
	if n, ok := signalNumber(end.GetStatus()); ok {
		return 128 + n, nil
	}
	return -1, errdefs.New(errdefs.Internal, "run step: the process ended abnormally: status %q, error %q", end.GetStatus(), end.GetError())
}

// signalNumber reads the signal out of a status the guest reports for a
// killed process (Go's os.ProcessState.String: "signal: killed",
// "signal: segmentation fault (core dumped)", "signal 34").
func signalNumber(status string) (int, bool) {
	s := strings.TrimSuffix(status, " (core dumped)")
	if num, ok := strings.CutPrefix(s, "signal "); ok {
		n, err := strconv.Atoi(num)
		return n, err == nil && n > 0
	}
	name, ok := strings.CutPrefix(s, "signal: ")
	if !ok {
		return 0, false
	}
	for n := 1; n < 65; n++ {
		if syscall.Signal(n).String() == name {
			return n, true
		}
	}
	return 0, false
}

// randomHex is n random bytes, hex-encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
