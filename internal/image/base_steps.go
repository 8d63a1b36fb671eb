package image

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// baseStep is one named step of finishing a debootstrapped root filesystem.
type baseStep struct {
	name string
	run  func(ctx context.Context, rootfs string) error
}

// baseSteps turn a debootstrapped tree into the base image, in order.
var baseSteps = []baseStep{
	{"add user", addBaseUser},
	{"allow user to sudo", allowSudo},
	{"login shells start no helper process", quickLoginShells},
	{"clean apt caches", cleanApt},
	{"remove host files", removeHostFiles},
	{"remove documentation", removeDocs},
}

// addBaseUser adds "user" (uid and gid 1000, home /home/user, bash).
func addBaseUser(ctx context.Context, rootfs string) error {
	cmd := exec.CommandContext(ctx, "chroot", rootfs, "useradd", "--create-home", "--uid", "1000",
		"--user-group", "--shell", "/bin/bash", "--home-dir", "/home/user", "user")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("useradd: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// allowSudo gives "user" passwordless sudo, as E2B's base image does, so
// agents running as user can install packages.
func allowSudo(_ context.Context, rootfs string) error {
	dir := filepath.Join(rootfs, "etc", "sudoers.d")
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil // sudo is not installed (a custom package list)
	}
	return os.WriteFile(filepath.Join(dir, "user"), []byte("user ALL=(ALL:ALL) NOPASSWD: ALL\n"), 0o440)
}

// loginShellEdits rewrite Debian's login scripts so that `bash -l` starts
// no helper process: bash knows its effective uid ($EUID; other shells fall
// back to id -u), and root's `mesg n` only means something on a terminal.
// Every E2B command runs as `bash -l -c`, and inside gVisor each process
// start costs 10-20 ms, so these two lines were most of a command's
// start-up. Lines that are not there (another release) are left alone.
var loginShellEdits = []struct{ file, old, new string }{
	{"etc/profile", `"$(id -u)"`, `"${EUID:-$(id -u)}"`},
	{"root/.profile", "\nmesg n 2> /dev/null || true", "\nif [ -t 0 ]; then mesg n 2> /dev/null || true; fi"},
}

// quickLoginShells applies loginShellEdits.
func quickLoginShells(_ context.Context, rootfs string) error {
	for _, e := range loginShellEdits {
		path := filepath.Join(rootfs, e.file)
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		edited := strings.ReplaceAll(string(data), e.old, e.new)
		if edited == string(data) {
			continue
		}
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(edited), fi.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}

// cleanApt removes downloaded packages and package lists (apt-get clean and
// more): the image does not need them and they are most of its size.
func cleanApt(_ context.Context, rootfs string) error {
	for _, dir := range []string{"var/cache/apt/archives", "var/lib/apt/lists", "var/cache/apt"} {
		entries, err := os.ReadDir(filepath.Join(rootfs, dir))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.IsDir() || e.Name() == "lock" {
				continue // keep archives/partial, lists/partial and locks
			}
			if err := os.Remove(filepath.Join(rootfs, dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeHostFiles drops what debootstrap copied from the host: the sandbox
// runtime provides its own resolv.conf and hostname.
func removeHostFiles(_ context.Context, rootfs string) error {
	for _, f := range []string{"etc/resolv.conf", "etc/hostname"} {
		if err := os.Remove(filepath.Join(rootfs, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// removeDocs drops manuals and documentation, keeping the copyright files
// Debian's licences ask to ship with the packages.
func removeDocs(_ context.Context, rootfs string) error {
	for _, d := range []string{"usr/share/man", "usr/share/info"} {
		if err := removeContents(filepath.Join(rootfs, d), nil); err != nil {
			return err
		}
	}
	docs := filepath.Join(rootfs, "usr/share/doc")
	pkgs, err := os.ReadDir(docs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, p := range pkgs {
		keep := func(name string) bool { return name == "copyright" }
		if err := removeContents(filepath.Join(docs, p.Name()), keep); err != nil {
			return err
		}
	}
	return nil
}

// removeContents removes the entries of dir except those keep accepts.
// A missing dir, or one that is a symlink, is left alone.
func removeContents(dir string, keep func(string) bool) error {
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if keep != nil && keep(e.Name()) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// defaultMirror is used when the host's apt sources name none for the suite.
const defaultMirror = "http://deb.debian.org/debian"

// hostMirror returns the first mirror URI the host's apt sources in aptDir
// (sources.list, sources.list.d/*.list and deb822 *.sources) use for suite.
func hostMirror(aptDir, suite string) string {
	files := []string{filepath.Join(aptDir, "sources.list")}
	for _, pat := range []string{"*.list", "*.sources"} {
		m, _ := filepath.Glob(filepath.Join(aptDir, "sources.list.d", pat))
		files = append(files, m...)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var uri string
		if strings.HasSuffix(f, ".sources") {
			uri = deb822Mirror(string(data), suite)
		} else {
			uri = oneLineMirror(string(data), suite)
		}
		if uri != "" {
			return uri
		}
	}
	return defaultMirror
}

// oneLineMirror reads "deb [options] URI suite components" lines.
func oneLineMirror(data, suite string) string {
	sc := bufio.NewScanner(strings.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) >= 2 && f[1] == suite {
			return f[0]
		}
	}
	return ""
}

// deb822Mirror reads deb822 stanzas (Types, URIs, Suites, ...).
func deb822Mirror(data, suite string) string {
	for _, stanza := range strings.Split(data, "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if !slices.Contains(strings.Fields(fields["types"]), "deb") || fields["enabled"] == "no" {
			continue
		}
		if slices.Contains(strings.Fields(fields["suites"]), suite) {
			if uris := strings.Fields(fields["uris"]); len(uris) > 0 {
				return uris[0]
			}
		}
	}
	return ""
}
