package sim

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/drivertest"
	"github.com/denhq/den/internal/errdefs"
)

func TestConformanceLifecycle(t *testing.T) {
	drivertest.RunLifecycle(t, func(t *testing.T) (driver.Driver, driver.Spec) {
		return New(), driver.Spec{CPUs: 1, MemoryMB: 256, DiskMB: 256, Image: driver.Image{Ref: "sim"}}
	})
}

func TestSimulatedCommands(t *testing.T) {
	d := New()
	defer d.Close()
	ctx := context.Background()
	if _, err := d.Create(ctx, driver.Spec{ID: "sb"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		argv           []string
		stdout, stderr string
		code           int
	}{
		{[]string{"echo", "hi"}, "hi\n", "", 0},
		{[]string{"/bin/bash", "-lc", "echo a; echo b >&2; exit 3"}, "a\n", "b\n", 3},
		{[]string{"sh", "-c", "false"}, "", "", 1},
		{[]string{"python3", "-c", "print(1)"}, "", "sim: python3: command not simulated\n", 127},
		{[]string{"sh", "-c", "sleep 0.01; echo 'done'"}, "done\n", "", 0},
	} {
		res, err := drivertest.Exec(ctx, d, "sb", tc.argv...)
		if err != nil {
			t.Fatalf("%v: %v", tc.argv, err)
		}
		if res.Stdout != tc.stdout || res.Stderr != tc.stderr || res.ExitCode != tc.code {
			t.Errorf("%v = %+v, want stdout %q stderr %q exit %d", tc.argv, res, tc.stdout, tc.stderr, tc.code)
		}
	}
	if err := d.Recover(ctx, &driver.Handle{ID: "gone", Driver: Name, Version: 1}); err == nil {
		t.Fatal("recovered a sandbox this simulator never had")
	}
}

// handoffDialer reaches the simulated guest by handing it one end of a
// pipe, as a node hands it a node link's stream.
type handoffDialer struct{ d *Driver }

func (h handoffDialer) DialGuest(ctx context.Context, id string) (net.Conn, error) {
	near, far := net.Pipe()
	accepted := false
	err := h.d.HandOffGuest(ctx, id, func() (net.Conn, error) { accepted = true; return far, nil })
	if err != nil {
		near.Close()
		far.Close()
		if accepted {
			return nil, errors.New("HandOffGuest failed after it accepted the stream")
		}
		return nil, err
	}
	return near, nil
}

// A stream handed to the simulator is served as its guest agent; one for
// a sandbox it does not run is refused before it is taken.
func TestHandOffGuest(t *testing.T) {
	d := New()
	defer d.Close()
	ctx := context.Background()
	if _, err := d.Create(ctx, driver.Spec{ID: "sb"}); err != nil {
		t.Fatal(err)
	}
	res, err := drivertest.Exec(ctx, handoffDialer{d}, "sb", "sh", "-c", "echo a; echo b >&2; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	if res.Stdout != "a\n" || res.Stderr != "b\n" || res.ExitCode != 3 {
		t.Fatalf("exec over a handed-off stream = %+v, want a, b, exit 3", res)
	}
	called := false
	err = d.HandOffGuest(ctx, "gone", func() (net.Conn, error) { called = true; return nil, errors.New("unused") })
	if !errdefs.IsNotFound(err) || called {
		t.Fatalf("hand off to a sandbox that does not run = %v (accept called: %v), want not found before accept", err, called)
	}
}
