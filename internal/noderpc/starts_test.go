package noderpc

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

// newRecord is a sandbox the server has placed on n1 and not recorded.
func newRecord(id string) *store.Sandbox {
	return &store.Sandbox{ID: id, Tenant: "t", Image: "img", Node: "n1", MemoryMB: 64, DiskMB: 64, CPUs: 1,
		TimeoutSec: 600, CreatedAt: time.Now(), AccessToken: "tok-" + id}
}

// held reports whether the agent's runtime holds sandbox id.
func (c *cluster) held(t *testing.T, id string) bool {
	t.Helper()
	ids, err := c.drv.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return slices.Contains(ids, id)
}

// A start of a new sandbox is one store write, made once it runs: the
// record the server asked for, running, with the node's handle.
func TestStartNewRecordsOnceRunning(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	writes := 0
	record := func(rec *store.Sandbox) error {
		writes++
		if _, err := c.st.Snapshot().Sandbox(rec.ID); !errdefs.IsNotFound(err) {
			t.Errorf("a record of %s existed before the start was recorded: %v", rec.ID, err)
		}
		if !c.held(t, rec.ID) {
			t.Errorf("%s was recorded before it ran", rec.ID)
		}
		return c.st.CreateSandbox(ctx, rec)
	}
	want := newRecord("a")
	got, err := c.remote.StartNew(ctx, c.starts, want, record)
	if err != nil {
		t.Fatal(err)
	}
	if writes != 1 {
		t.Fatalf("%d store writes for a start, want 1", writes)
	}
	stored, err := c.st.Snapshot().Sandbox("a")
	if err != nil {
		t.Fatal(err)
	}
	for _, sb := range []*store.Sandbox{got, stored} {
		if sb.State != store.StateRunning || len(sb.Handle) == 0 || sb.AccessToken != want.AccessToken || sb.Node != "n1" ||
			sb.StartedAt.IsZero() || !sb.ExpiresAt.After(sb.StartedAt) {
			t.Fatalf("record after StartNew = %+v; want running with a handle, the asked token and node, and an expiry", sb)
		}
	}
	if err := c.remote.DestroyFrom(ctx, stored); err != nil {
		t.Fatal(err)
	}
	if c.held(t, "a") {
		t.Fatal("the runtime still holds a destroyed sandbox")
	}
}

// A node may create only the record of a start the server asked of it,
// and what it sends beyond the handle is ignored.
func TestStartNewRecordIsTheServers(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	forged := newRecord("forged")
	forged.State, forged.Handle = store.StateRunning, []byte(`{}`)
	if err := RemoteRecords(c.link).CreateSandbox(ctx, forged); !errdefs.Is(err, errdefs.PermissionDenied) {
		t.Fatalf("a record nobody asked for = %v, want permission denied", err)
	}
	if _, err := c.st.Snapshot().Sandbox("forged"); !errdefs.IsNotFound(err) {
		t.Fatalf("a record nobody asked for was written: %v", err)
	}

	// A node that sends a different tenant and token gets the asked ones.
	p, err := c.starts.expect("n1", newRecord("b"), func(rec *store.Sandbox) error { return c.st.CreateSandbox(ctx, rec) })
	if err != nil {
		t.Fatal(err)
	}
	evil := newRecord("b")
	evil.Tenant, evil.AccessToken, evil.Handle, evil.Node = "other", "stolen", []byte(`{"id":"b"}`), "n2"
	if err := RemoteRecords(c.link).CreateSandbox(ctx, evil); err != nil {
		t.Fatal(err)
	}
	if rec := c.starts.settle(p); rec == nil || rec.Tenant != "t" || rec.AccessToken != "tok-b" || rec.Node != "n1" {
		t.Fatalf("settled record = %+v; want the server's tenant, token and node", rec)
	}
	if err := RemoteRecords(c.link).CreateSandbox(ctx, evil); !errdefs.Is(err, errdefs.PermissionDenied) {
		t.Fatalf("a record after the start was settled = %v, want permission denied", err)
	}
}

// A start that fails records nothing, and one whose record is refused
// leaves nothing running.
func TestStartNewFailuresLeaveNothing(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	record := func(rec *store.Sandbox) error { return c.st.CreateSandbox(ctx, rec) }
	missing := newRecord("noimage")
	missing.Image = "missing"
	if _, err := c.remote.StartNew(ctx, c.starts, missing, record); err == nil {
		t.Fatal("a start on a missing image succeeded")
	}
	refused := func(*store.Sandbox) error { return errdefs.New(errdefs.AlreadyExists, "name taken") }
	if _, err := c.remote.StartNew(ctx, c.starts, newRecord("refused"), refused); !errdefs.Is(err, errdefs.AlreadyExists) {
		t.Fatalf("a start whose record is refused = %v, want already exists", err)
	}
	for _, id := range []string{"noimage", "refused"} {
		if _, err := c.st.Snapshot().Sandbox(id); !errdefs.IsNotFound(err) {
			t.Fatalf("failed start %s has a record: %v", id, err)
		}
		if c.held(t, id) {
			t.Fatalf("failed start %s is left running", id)
		}
	}
}

// A start whose record is being written when the server gives up on it
// counts as done: the write is not cut short, the call answers the
// record, and the node keeps the sandbox running. Server and node agree.
func TestStartNewRecordedWhileTheServerGivesUp(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	writing, release := make(chan struct{}), make(chan struct{})
	type result struct {
		rec *store.Sandbox
		err error
	}
	done := make(chan result, 1)
	go func() {
		rec, err := c.remote.StartNew(ctx, c.starts, newRecord("slow"), func(rec *store.Sandbox) error {
			close(writing)
			<-release
			return c.st.CreateSandbox(context.Background(), rec)
		})
		done <- result{rec, err}
	}()
	<-writing
	cancel()
	time.Sleep(50 * time.Millisecond) // the call's end reaches the node
	close(release)
	r := <-done
	if r.err != nil || r.rec == nil || r.rec.State != store.StateRunning {
		t.Fatalf("StartNew recorded while the server gave up = %+v, %v; want the running record", r.rec, r.err)
	}
	if _, err := c.st.Snapshot().Sandbox("slow"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // a wrong destroy would come now
	if !c.held(t, "slow") {
		t.Fatal("the node stopped a sandbox whose start was recorded")
	}
}
