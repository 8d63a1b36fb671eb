package image

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/denhq/den/internal/errdefs"
)

// BuildBusybox records a tiny image called name made from the host's static
// busybox (apt package busybox-static): its applets, users root (0) and user
// (1000, home /home/user) and /tmp. It fails with FailedPrecondition when
// busybox is not installed.
func BuildBusybox(ctx context.Context, s *Store, name string) (*Image, error) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return nil, errdefs.Wrap(errdefs.FailedPrecondition, err, "build busybox image: install busybox-static")
	}
	dir, err := os.MkdirTemp(s.tmpDir(), "busybox-")
	if err != nil {
		return nil, fmt.Errorf("build busybox image: %w", err)
	}
	defer s.removeWork(dir)
	if err := WriteBusyboxRootfs(dir, bb); err != nil {
		return nil, fmt.Errorf("build busybox image: %w", err)
	}
	return s.ImportDir(ctx, dir, name, Config{Env: []string{DefaultPath}})
}

// WriteBusyboxRootfs fills dir with a busybox root filesystem using the
// static busybox binary at bb.
func WriteBusyboxRootfs(dir, bb string) error {
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root", "home/user", "var/tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	// os.Chmod takes Go's mode bits: the sticky bit is os.ModeSticky, not 0o1000.
	for _, d := range []string{"tmp", "var/tmp"} {
		if err := os.Chmod(filepath.Join(dir, d), 0o777|os.ModeSticky); err != nil {
			return err
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		return err
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return err
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
		"etc/group":  "root:x:0:\nuser:x:1000:\n",
		"etc/hosts":  "127.0.0.1 localhost\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return os.Chown(filepath.Join(dir, "home/user"), 1000, 1000)
}
