package gvisor

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/internal/driver/drivertest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/testenv"
)

// hostListener listens on a unix socket standing for a host service the
// sandbox must never reach, and reports whether anything connected.
func hostListener(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	dir, err := os.MkdirTemp("", "den-host-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "host.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	hit := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			hit <- struct{}{}
			c.Close()
		}
	}()
	return path, hit
}

func TestDialUnixRefusesSymlinks(t *testing.T) {
	target, hit := hostListener(t)
	link := filepath.Join(t.TempDir(), "guest.sock")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	_, err := dialUnix(context.Background(), link)
	if err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Fatalf("dialUnix through a symlink: %v, want a 'not a socket' error", err)
	}
	select {
	case <-hit:
		t.Fatal("dialUnix followed the symlink to the host socket")
	default:
	}
	c, err := dialUnix(context.Background(), target)
	if err != nil {
		t.Fatalf("dialUnix of a real socket: %v", err)
	}
	c.Close()
}

// TestSandboxCannotRedirectGuestChannel replaces the guest socket, from
// inside the sandbox, with a symlink to a host socket: DialGuest must fail
// rather than connect the caller to the host service.
func TestSandboxCannotRedirectGuestChannel(t *testing.T) {
	d, spec := newTestDriver(t)
	t.Cleanup(func() { d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	spec.ID = "redirect-" + strings.ToLower(t.Name()[len(t.Name())-4:])
	if _, err := d.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	defer d.Destroy(context.Background(), spec.ID)
	target, hit := hostListener(t)
	script := "rm -f /.den/run/guest.sock && ln -s " + target + " /.den/run/guest.sock && echo done"
	res, err := drivertest.Shell(ctx, d, spec.ID, script)
	if err != nil || !strings.Contains(string(res.Stdout), "done") {
		t.Fatalf("replace the socket from inside: %v %+v", err, res)
	}
	if c, err := d.DialGuest(ctx, spec.ID); err == nil {
		c.Close()
		t.Fatal("DialGuest connected through a symlink the sandbox planted")
	}
	select {
	case <-hit:
		t.Fatal("the host socket received a connection from DialGuest")
	default:
	}
}

// TestColdStartWaitsForASlotAndHonoursCtx fills the only start slot and
// checks a Create waits for it, gives up with a Canceled error when its
// context ends, and leaves nothing behind.
func TestColdStartWaitsForASlotAndHonoursCtx(t *testing.T) {
	testenv.RequireRoot(t)
	d, spec := newTestDriver(t)
	t.Cleanup(func() { d.Close() })
	g := d.(*Driver)
	if cap(g.coldStarts) < 1 {
		t.Fatalf("no start slots: %d", cap(g.coldStarts))
	}
	for range cap(g.coldStarts) {
		g.coldStarts <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	spec.ID = "slot-wait"
	_, err := d.Create(ctx, spec)
	if !errdefs.Is(err, errdefs.Canceled) || !strings.Contains(err.Error(), "wait for a start slot") {
		t.Fatalf("Create with every start slot taken: %v, want Canceled while waiting for a slot", err)
	}
	if _, err := os.Stat(filepath.Join(drivertest.TempDir(t), "sandboxes", spec.ID)); !os.IsNotExist(err) {
		t.Fatalf("a Create that never started left its directory: %v", err)
	}
	for range cap(g.coldStarts) {
		<-g.coldStarts
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	if _, err := d.Create(ctx2, spec); err != nil {
		t.Fatalf("Create once a slot is free: %v", err)
	}
	if err := d.Destroy(ctx2, spec.ID); err != nil {
		t.Fatal(err)
	}
}
