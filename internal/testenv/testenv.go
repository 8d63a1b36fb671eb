// Package testenv finds or builds the real components integration tests run
// against (runsc, den-guest, a busybox root filesystem) and skips a test,
// loudly and with the reason, when one is missing. With DEN_REQUIRE_INTEGRATION=1
// (set by `make test`) a missing component fails the test instead, so CI can
// never pass by skipping.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/denhq/den/internal/image"
)

// RepoRoot is the root of the den checkout this package was compiled from.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Missing skips t, or fails it when DEN_REQUIRE_INTEGRATION=1.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("DEN_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("integration test cannot run: "+format, args...)
	}
	t.Skipf("SKIP (set up with `make build`): "+format, args...)
}

// RequireRoot skips t unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root (gVisor sandboxes, mounts)")
	}
}

// Runsc returns the path of the pinned runsc build: $DEN_RUNSC, else
// bin/runsc in the checkout (built by `make build`).
func Runsc(t testing.TB) string {
	t.Helper()
	p := os.Getenv("DEN_RUNSC")
	if p == "" {
		p = filepath.Join(RepoRoot(), "bin", "runsc")
	}
	if _, err := os.Stat(p); err != nil {
		Missing(t, "runsc not found at %s: run `make build`", p)
	}
	return p
}

var (
	guestOnce sync.Once
	guestPath string
	guestErr  error
)

// GuestBinary returns a static den-guest binary: $DEN_GUEST_BIN, else one
// built once per test process from cmd/den-guest.
func GuestBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("DEN_GUEST_BIN"); p != "" {
		return p
	}
	guestOnce.Do(func() {
		dir, err := os.MkdirTemp("", "den-guest-bin-")
		if err != nil {
			guestErr = err
			return
		}
		guestPath = filepath.Join(dir, "den-guest")
		cmd := exec.Command("go", "build", "-o", guestPath, "./cmd/den-guest")
		cmd.Dir = RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			guestErr = &buildError{out: string(out), err: err}
		}
	})
	if guestErr != nil {
		t.Fatalf("build den-guest: %v", guestErr)
	}
	return guestPath
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(e.out) }

// BusyboxRootfs makes a small root filesystem in a temporary directory: a
// static busybox with its applets, users root (0) and user (1000, home
// /home/user), /tmp. It fails the test when busybox-static is missing.
func BusyboxRootfs(t testing.TB) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		Missing(t, "busybox not found: apt-get install busybox-static (make deps does it)")
	}
	dir := t.TempDir()
	if err := WriteBusyboxRootfs(dir, bb); err != nil {
		t.Fatalf("busybox rootfs: %v", err)
	}
	return dir
}

// WriteBusyboxRootfs fills dir with a busybox root filesystem using the
// static busybox binary at bb. It is image.WriteBusyboxRootfs.
func WriteBusyboxRootfs(dir, bb string) error { return image.WriteBusyboxRootfs(dir, bb) }
