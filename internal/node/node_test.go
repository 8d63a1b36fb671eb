package node

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/fake"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

// images resolves "img" and the images of commandImages.
type images struct{}

func (images) Rootfs(ref string) (driver.Image, error) {
	if ref == "img" {
		return driver.Image{Ref: ref}, nil
	}
	if cmd, ok := commandImages[ref]; ok {
		// The fake's guest runs processes on the host, as the test's user.
		return driver.Image{Ref: ref, Command: cmd, User: strconv.Itoa(os.Geteuid())}, nil
	}
	return driver.Image{}, errdefs.New(errdefs.NotFound, "image %s not found", ref)
}

type env struct {
	t     *testing.T
	st    *store.Store
	drv   *fake.Driver
	node  *Node
	dir   string
	snaps string // the node's snapshot dir
	clock *clock
	fails func(ctx context.Context, spec driver.Spec) error
	// Fault injection into the fake's Suspender, for every restart.
	failSuspend func(ctx context.Context, id, dir string) error
	failResume  func(ctx context.Context, spec driver.Spec, dir string) error
	failClone   func(ctx context.Context, spec driver.Spec, dir string) error
}

// clock is a settable clock for the node.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), snaps: filepath.Join(t.TempDir(), "snapshots"),
		clock: &clock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}}
	st, err := store.Open(context.Background(), store.Config{Dir: t.TempDir(), NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	e.restart()
	return e
}

// restart builds a new driver and node over the same state, as after a
// restart of den.
func (e *env) restart() {
	e.t.Helper()
	if e.node != nil {
		e.node.Close()
	}
	drv, err := fake.New(fake.Config{Dir: e.dir, FailCreate: func(ctx context.Context, spec driver.Spec) error {
		if e.fails != nil {
			return e.fails(ctx, spec)
		}
		return nil
	}, FailSuspend: func(ctx context.Context, id, dir string) error {
		if e.failSuspend != nil {
			return e.failSuspend(ctx, id, dir)
		}
		return nil
	}, FailResume: func(ctx context.Context, spec driver.Spec, dir string) error {
		if e.failResume != nil {
			return e.failResume(ctx, spec, dir)
		}
		return nil
	}, FailClone: func(ctx context.Context, spec driver.Spec, dir string) error {
		if e.failClone != nil {
			return e.failClone(ctx, spec, dir)
		}
		return nil
	}})
	if err != nil {
		e.t.Fatal(err)
	}
	n, err := New(Config{ID: "n1", Driver: drv, Images: images{}, Store: e.st, SnapshotDir: e.snaps, Now: e.clock.Now})
	if err != nil {
		e.t.Fatal(err)
	}
	e.drv, e.node = drv, n
	e.t.Cleanup(func() { n.Close() })
}

func (e *env) record(id, state, image string) {
	e.t.Helper()
	sb := &store.Sandbox{ID: id, Tenant: "t", Image: image, State: state, Node: "n1", MemoryMB: 64, DiskMB: 64, CPUs: 1, TimeoutSec: 60, CreatedAt: time.Now()}
	if err := e.st.CreateSandbox(context.Background(), sb); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) get(id string) *store.Sandbox {
	e.t.Helper()
	sb, err := e.st.Snapshot().Sandbox(id)
	if err != nil {
		e.t.Fatalf("get %s: %v", id, err)
	}
	return sb
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStartRecordsRunningWithHandleAndExpiry(t *testing.T) {
	e := newEnv(t)
	e.record("a", rest.StateStarting, "img")
	sb, err := e.node.Start(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if sb.State != rest.StateRunning || sb.StartedAt.IsZero() || sb.ExpiresAt.Sub(sb.StartedAt) != time.Minute {
		t.Fatalf("after Start: state=%s started=%v expires=%v", sb.State, sb.StartedAt, sb.ExpiresAt)
	}
	var h driver.Handle
	if err := json.Unmarshal(e.get("a").Handle, &h); err != nil || h.ID != "a" || h.Driver != fake.Name {
		t.Fatalf("stored handle %s: %v", e.get("a").Handle, err)
	}
}

func TestStartFailureRecordsReason(t *testing.T) {
	e := newEnv(t)
	e.fails = func(context.Context, driver.Spec) error { return errors.New("no room") }
	e.record("a", rest.StateStarting, "img")
	if _, err := e.node.Start(context.Background(), "a"); err == nil {
		t.Fatal("Start succeeded with a failing driver")
	}
	if sb := e.get("a"); sb.State != rest.StateFailed || !strings.Contains(sb.Reason, "no room") {
		t.Fatalf("after a failed start: state=%s reason=%q", sb.State, sb.Reason)
	}
	e.record("b", rest.StateStarting, "missing")
	_, err := e.node.Start(context.Background(), "b")
	if !errdefs.IsNotFound(err) {
		t.Fatalf("Start with an unknown image: %v, want NotFound", err)
	}
}

func TestDestroyRemovesRecordAndIsIdempotent(t *testing.T) {
	e := newEnv(t)
	e.record("a", rest.StateStarting, "img")
	if _, err := e.node.Start(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := e.node.Destroy(context.Background(), "a"); err != nil {
			t.Fatalf("Destroy #%d: %v", i+1, err)
		}
	}
	if _, err := e.st.Snapshot().Sandbox("a"); !errdefs.IsNotFound(err) {
		t.Fatalf("record after Destroy: %v", err)
	}
}

// countingRecords counts the sandbox record writes a node makes.
type countingRecords struct {
	Records
	updates, deletes int
}

func (c *countingRecords) UpdateSandbox(ctx context.Context, sb *store.Sandbox) error {
	c.updates++
	return c.Records.UpdateSandbox(ctx, sb)
}

func (c *countingRecords) DeleteSandbox(ctx context.Context, id string) error {
	c.deletes++
	return c.Records.DeleteSandbox(ctx, id)
}

// A destroy is one store write, the record's removal once the sandbox is
// gone: no stopping state is written first (on a cluster every write is
// applied on every server).
func TestDestroyIsOneWrite(t *testing.T) {
	e := newEnv(t)
	recs := &countingRecords{Records: StoreRecords(e.st)}
	n, err := New(Config{ID: "n1", Driver: e.drv, Images: images{}, Records: recs, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	e.record("a", rest.StateStarting, "img")
	sb, err := n.Start(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	recs.updates, recs.deletes = 0, 0
	if err := n.DestroyFrom(context.Background(), sb); err != nil {
		t.Fatal(err)
	}
	if recs.updates != 0 || recs.deletes != 1 {
		t.Fatalf("a destroy made %d updates and %d deletes, want 0 and 1", recs.updates, recs.deletes)
	}
	if ids, _ := e.drv.List(context.Background()); slices.Contains(ids, "a") {
		t.Fatal("the runtime still holds a destroyed sandbox")
	}
	if _, err := e.st.Snapshot().Sandbox("a"); !errdefs.IsNotFound(err) {
		t.Fatalf("record after the destroy: %v", err)
	}
}

func TestRecoverSettlesEveryState(t *testing.T) {
	e := newEnv(t)
	for _, id := range []string{"alive", "dead"} {
		e.record(id, rest.StateStarting, "img")
		if _, err := e.node.Start(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	e.record("midstart", rest.StateStarting, "img")
	e.record("midstop", rest.StateStopping, "img")
	e.node.Close() // stop watching before the crash, as a dying den would
	if err := e.drv.Kill("dead"); err != nil {
		t.Fatal(err)
	}

	e.restart()
	if err := e.node.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if sb := e.get("alive"); sb.State != rest.StateRunning {
		t.Errorf("alive: %s %q", sb.State, sb.Reason)
	}
	if sb := e.get("dead"); sb.State != rest.StateFailed || !strings.Contains(sb.Reason, "gone after den restarted") {
		t.Errorf("dead: %s %q", sb.State, sb.Reason)
	}
	if sb := e.get("midstart"); sb.State != rest.StateFailed || !strings.Contains(sb.Reason, "while the sandbox was starting") {
		t.Errorf("midstart: %s %q", sb.State, sb.Reason)
	}
	if _, err := e.st.Snapshot().Sandbox("midstop"); !errdefs.IsNotFound(err) {
		t.Errorf("midstop still recorded: %v", err)
	}
}

func TestSandboxThatDiesIsRecordedFailed(t *testing.T) {
	e := newEnv(t)
	e.record("a", rest.StateStarting, "img")
	if _, err := e.node.Start(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if err := e.drv.Kill("a"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the dead sandbox is recorded failed", func() bool { return e.get("a").State == rest.StateFailed })
	if r := e.get("a").Reason; !strings.Contains(r, "stopped unexpectedly") {
		t.Fatalf("reason = %q", r)
	}
}

func TestDestroyIsNotReportedAsDeath(t *testing.T) {
	e := newEnv(t)
	e.record("a", rest.StateStarting, "img")
	if _, err := e.node.Start(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	e.record("b", rest.StateStarting, "img")
	if _, err := e.node.Start(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	if err := e.node.Destroy(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	e.node.Close() // waits for the watchers: a's has seen the destroy
	if _, err := e.st.Snapshot().Sandbox("a"); !errdefs.IsNotFound(err) {
		t.Fatalf("destroyed sandbox came back: %v", err)
	}
	if sb := e.get("b"); sb.State != rest.StateRunning {
		t.Fatalf("untouched sandbox b is %s", sb.State)
	}
}
