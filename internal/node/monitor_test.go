package node

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/fake"
)

// zombieDriver is the fake driver with a sandbox that died the way a gVisor
// sandbox killed for memory does: for a moment the runtime still calls it
// running (its process not yet reaped) and its guest socket still takes a
// connection (the gofer holds it), which nobody answers.
type zombieDriver struct {
	*fake.Driver
	mu   sync.Mutex
	dead map[string]bool
}

func (d *zombieDriver) kill(id string) error {
	d.mu.Lock()
	d.dead[id] = true
	d.mu.Unlock()
	return d.Driver.Kill(id)
}

func (d *zombieDriver) isDead(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dead[id]
}

func (d *zombieDriver) Status(ctx context.Context, id string) (driver.Status, error) {
	if d.isDead(id) {
		return driver.Status{Running: true}, nil
	}
	return d.Driver.Status(ctx, id)
}

func (d *zombieDriver) DialGuest(ctx context.Context, id string) (net.Conn, error) {
	if !d.isDead(id) {
		return d.Driver.DialGuest(ctx, id)
	}
	ours, theirs := net.Pipe()
	go func() { // take what is sent, answer nothing, then reset
		_, _ = io.CopyN(io.Discard, theirs, 16)
		theirs.Close()
	}()
	return ours, nil
}

// TestDeathSeenThroughAStillOpenSocket checks a sandbox whose process died
// is recorded failed even when, at that moment, the runtime still calls it
// running and its guest socket takes a connection: the guest must answer.
func TestDeathSeenThroughAStillOpenSocket(t *testing.T) {
	e := newEnv(t)
	e.node.Close()
	drv := &zombieDriver{Driver: e.drv, dead: map[string]bool{}}
	n, err := New(Config{ID: "n1", Driver: drv, Images: images{}, Store: e.st, SnapshotDir: e.snaps, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	e.record("a", rest.StateStarting, "img")
	if _, err := n.Start(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if !n.guestAnswers(context.Background(), "a") {
		t.Fatal("a live sandbox's guest does not answer")
	}
	if err := drv.kill("a"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the dead sandbox is recorded failed", func() bool { return e.get("a").State == rest.StateFailed })
	if r := e.get("a").Reason; !strings.Contains(r, "stopped unexpectedly") {
		t.Fatalf("reason = %q", r)
	}
}
