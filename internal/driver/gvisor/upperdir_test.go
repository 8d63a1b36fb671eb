package gvisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/errdefs"
)

// TestUpperDirOtherFilesystem checks that an UpperDir on another
// filesystem than the state dir (overlayfs needs its work dir beside it) is
// refused with InvalidArgument before anything is started.
func TestUpperDirOtherFilesystem(t *testing.T) {
	d, spec := newTestDriver(t)
	t.Cleanup(func() { _ = d.Close() })
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	spec.ID = fmt.Sprintf("otherfs-%d", os.Getpid())
	spec.UpperDir = filepath.Join(mnt, "upper")
	if err := os.Mkdir(spec.UpperDir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := d.Create(context.Background(), spec)
	stateDir := filepath.Dir(filepath.Dir(d.(*Driver).paths(spec.ID).dir))
	want := fmt.Sprintf("create sandbox %s: prepare writable layer: upper dir %s is not on the filesystem of the driver's state dir %s", spec.ID, spec.UpperDir, stateDir)
	if errdefs.KindOf(err) != errdefs.InvalidArgument || err == nil || err.Error() != want {
		t.Fatalf("Create = %v (kind %v), want InvalidArgument %q", err, errdefs.KindOf(err), want)
	}
	if left := leftovers(t, spec.ID); len(left) > 0 {
		t.Errorf("left behind: %q", left)
	}
}
