package node

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

// newSandbox is the record of a new sandbox as the server makes it:
// starting, on image "img".
func newSandbox(id string) *store.Sandbox {
	return &store.Sandbox{ID: id, Tenant: "t", Image: "img", State: rest.StateStarting, Node: "n1",
		MemoryMB: 64, DiskMB: 64, CPUs: 1, TimeoutSec: 60, CreatedAt: time.Now()}
}

// declarePool gives the fake a pool of sb's shape, from which it claims.
func (e *env) declarePool(sb *store.Sandbox) {
	img, err := images{}.Rootfs(sb.Image)
	if err != nil {
		e.t.Fatal(err)
	}
	e.drv.SetPools([]driver.Pool{{Key: "p", Spec: specOf(sb, img), Size: 1}})
}

// listed reports whether the driver holds sandbox id.
func (e *env) listed(id string) bool {
	e.t.Helper()
	ids, err := e.drv.List(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return slices.Contains(ids, id)
}

// TestStartClaimedRecordsOnce: a claim is recorded once, running, with
// its handle and expiry; the store sees no starting state.
func TestStartClaimedRecordsOnce(t *testing.T) {
	e := newEnv(t)
	sb := newSandbox("claimed")
	e.declarePool(sb)
	var writes []string
	rec, err := e.node.StartClaimed(context.Background(), sb, func(rec *store.Sandbox) error {
		writes = append(writes, rec.State)
		return e.st.CreateSandbox(context.Background(), rec)
	})
	if err != nil || rec == nil {
		t.Fatalf("StartClaimed = %v, %v; want the running record", rec, err)
	}
	if !slices.Equal(writes, []string{rest.StateRunning}) {
		t.Errorf("records written: %q, want one, running", writes)
	}
	got := e.get("claimed")
	if got.State != rest.StateRunning || len(got.Handle) == 0 {
		t.Errorf("stored record: state %s, handle %s; want running with a handle", got.State, got.Handle)
	}
	if want := e.clock.Now().Add(60 * time.Second); !got.ExpiresAt.Equal(want) {
		t.Errorf("expires at %v, want %v (timeout from the claim)", got.ExpiresAt, want)
	}
	if got.ModifyIndex != rec.ModifyIndex {
		t.Errorf("returned record at index %d, stored at %d", rec.ModifyIndex, got.ModifyIndex)
	}
	if _, err := e.drv.Status(context.Background(), "claimed"); err != nil {
		t.Errorf("the claimed sandbox on the driver: %v", err)
	}
}

// TestStartClaimedWithoutSpare: with no spare of the shape nothing is
// created or recorded, and the caller goes the way of Start.
func TestStartClaimedWithoutSpare(t *testing.T) {
	e := newEnv(t)
	rec, err := e.node.StartClaimed(context.Background(), newSandbox("cold"), func(*store.Sandbox) error {
		t.Error("record called without a claim")
		return nil
	})
	if rec != nil || err != nil {
		t.Fatalf("StartClaimed without a spare = %v, %v; want nothing", rec, err)
	}
	if e.listed("cold") {
		t.Error("the driver holds a sandbox StartClaimed did not claim")
	}
}

// TestStartClaimedRecordFailure: a claim whose record is refused (a name
// taken, a quota) is destroyed, and the refusal returned.
func TestStartClaimedRecordFailure(t *testing.T) {
	e := newEnv(t)
	sb := newSandbox("refused")
	e.declarePool(sb)
	refusal := errdefs.New(errdefs.Conflict, "name taken")
	_, err := e.node.StartClaimed(context.Background(), sb, func(*store.Sandbox) error { return refusal })
	if !errors.Is(err, refusal) {
		t.Fatalf("StartClaimed = %v, want the record's error", err)
	}
	if e.listed("refused") {
		t.Error("a claim whose record failed still runs")
	}
}

// TestRecoverDestroysUnrecordedClaim: a crash between a claim and its
// record leaves a sandbox no record names; Recover destroys it and keeps
// recorded ones.
func TestRecoverDestroysUnrecordedClaim(t *testing.T) {
	e := newEnv(t)
	kept := newSandbox("kept")
	e.declarePool(kept)
	if _, err := e.node.StartClaimed(context.Background(), kept, func(rec *store.Sandbox) error {
		return e.st.CreateSandbox(context.Background(), rec)
	}); err != nil {
		t.Fatal(err)
	}
	// The crash: claimed on the driver, never recorded.
	img, _ := images{}.Rootfs("img")
	if _, err := e.drv.Claim(context.Background(), specOf(newSandbox("orphan"), img)); err != nil {
		t.Fatal(err)
	}
	e.node.Close()
	e.restart()
	if err := e.node.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.listed("orphan") {
		t.Error("Recover left a sandbox with no record running")
	}
	if !e.listed("kept") || e.get("kept").State != rest.StateRunning {
		t.Error("Recover did not keep the recorded claim running")
	}
}

// TestDropLostWaitsForAClaimsRecord: DropLost lists an orphan before its
// claim is recorded; it waits for the claim's lock and spares it once the
// record is there.
func TestDropLostWaitsForAClaimsRecord(t *testing.T) {
	e := newEnv(t)
	img, _ := images{}.Rootfs("img")
	sb := newSandbox("inflight")
	unlock := e.node.locks.lock(sb.ID) // the claim in progress
	if _, err := e.drv.Create(context.Background(), specOf(sb, img)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.node.DropLost(context.Background()) }()
	time.Sleep(100 * time.Millisecond) // DropLost has listed it and waits for the lock
	sb.State = rest.StateRunning
	if err := e.st.CreateSandbox(context.Background(), sb); err != nil {
		t.Fatal(err)
	}
	unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !e.listed("inflight") {
		t.Error("DropLost stopped a claim recorded while it waited for its lock")
	}
}
