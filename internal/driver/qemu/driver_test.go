package qemu

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/drivertest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/sandboxnet"
	"github.com/denhq/den/internal/testenv"
	"github.com/denhq/den/internal/vmkernel"
)

// newTestDriver is a driver over a state dir shared by the calls of one
// test (a second call models a den restart), with a fetched kernel, and
// a busybox spec, and t's sandbox networks (drivertest.Networks).
func newTestDriver(t *testing.T) (*Driver, driver.Spec) {
	t.Helper()
	testenv.RequireRoot(t)
	return newDriverAt(t, drivertest.TempDir(t), drivertest.Networks(t))
}

// newTestDriverB is newTestDriver for a benchmark, without networks.
func newTestDriverB(b *testing.B) (*Driver, driver.Spec) {
	b.Helper()
	return newDriverAt(b, b.TempDir(), nil)
}

// newDriverAt is a driver over dir with networks nets (nil: none).
func newDriverAt(t testing.TB, dir string, nets *sandboxnet.Manager) (*Driver, driver.Spec) {
	t.Helper()
	testenv.RequireRoot(t)
	kdir := os.Getenv("DEN_TEST_KERNEL_DIR")
	if kdir == "" {
		kdir = dir + "/kernels"
	}
	ks, err := vmkernel.Open(kdir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := ks.Fetch(ctx, "", io.Discard); err != nil {
		testenv.Missing(t, "fetch the guest kernel: %v", err)
	}
	d, err := New(Config{StateDir: dir + "/state", Kernels: ks, GuestBinary: testenv.GuestBinary(t), Accel: DetectAccel(), Networks: nets})
	if err != nil {
		testenv.Missing(t, "%v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	spec := driver.Spec{Image: driver.Image{Ref: "busybox", Layers: []string{testenv.BusyboxRootfs(t)}, Env: []string{"IMAGE_VAR=from image"}},
		CPUs: 1, MemoryMB: 256, DiskMB: 128, Env: map[string]string{"SPEC_VAR": "from spec"}}
	return d, spec
}

// TestCreateExecDestroy boots a sandbox VM from an image's layers, runs
// commands in it on the guest kernel with the image's and the spec's env
// and its hostname, reattaches from a new driver, and destroys it.
func TestCreateExecDestroy(t *testing.T) {
	d, spec := newTestDriver(t)
	spec.ID = "vm-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	begin := time.Now()
	h, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Logf("create (boot to agent) under %s: %v", d.Accel(), time.Since(begin))
	t.Cleanup(func() { _ = d.Destroy(context.Background(), spec.ID) })
	k, _ := d.cfg.Kernels.Get("")
	res, err := drivertest.Shell(ctx, d, spec.ID, `uname -r; echo "$IMAGE_VAR|$SPEC_VAR"; hostname; echo hi > /root-write && cat /root-write`)
	if err != nil {
		t.Fatal(err)
	}
	want := k.Version + "\nfrom image|from spec\n" + spec.ID + "\nhi\n"
	if res.Stdout != want || res.ExitCode != 0 {
		t.Fatalf("in the VM: %+v, want stdout %q", res, want)
	}
	if again, err := d.Create(ctx, spec); err != nil || again.ID != h.ID {
		t.Fatalf("Create of a running id = %+v, %v; want its handle", again, err)
	}
	// A new driver (den restarted: the old one's channel is closed)
	// reattaches.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2, _ := newTestDriver(t)
	if err := d2.Recover(ctx, h); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if res, err := drivertest.Shell(ctx, d2, spec.ID, "cat /root-write"); err != nil || res.Stdout != "hi\n" {
		t.Fatalf("after Recover: %+v, %v", res, err)
	}
	if err := d2.Destroy(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := d2.Status(ctx, spec.ID); !errdefs.IsNotFound(err) {
		t.Fatalf("Status after Destroy: %v, want NotFound", err)
	}
	if err := d2.Recover(ctx, h); !errdefs.IsNotFound(err) {
		t.Fatalf("Recover after Destroy: %v, want NotFound", err)
	}
	if err := d2.Destroy(ctx, spec.ID); err != nil {
		t.Fatalf("second Destroy: %v", err)
	}
}
