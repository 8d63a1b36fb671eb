package gvisor

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/internal/sandboxnet"
)

// TestClaimWritesAfterItReturns checks the writes a claim leaves to the
// background: once they are done, den.json holds the handle's state and
// the network's record names the sandbox, as a restart reads them.
func TestClaimWritesAfterItReturns(t *testing.T) {
	d, spec := newWarmDriver(t)
	spec.Network = &sandboxnet.Policy{}
	warmUp(t, d, spec, 1)
	h, err := d.Create(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Destroy(context.Background(), spec.ID) })
	if n := d.claims.Load(); n != 1 {
		t.Fatalf("claims = %d, want 1", n)
	}
	p := d.paths(spec.ID)
	stateWrites.wait(p.stateFile())
	onDisk, err := os.ReadFile(p.stateFile())
	if err != nil || string(onDisk) != string(h.State) {
		t.Fatalf("den.json after the claim = %s, %v; want the handle's state %s", onDisk, err, h.State)
	}
	if !recorded(t, d, spec.ID) {
		t.Fatalf("no network record names the sandbox %s", spec.ID)
	}
}

// TestRecoverFinishesAnInterruptedClaim puts back what a crash between a
// claim and its background writes leaves (the spare's den.json, the
// network recorded under the spare's ID) and checks Recover writes the
// claim's, so the sandbox runs, answers, and keeps its network.
func TestRecoverFinishesAnInterruptedClaim(t *testing.T) {
	d, spec := newWarmDriver(t)
	spec.Network = &sandboxnet.Policy{}
	warmUp(t, d, spec, 1)
	ctx := context.Background()
	h, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Destroy(ctx, spec.ID) })
	st, err := decodeState(h)
	if err != nil {
		t.Fatal(err)
	}
	spareID, ok := strings.CutSuffix(st.RuntimeID, runtimeIDSuffix)
	if !ok || spareID == spec.ID {
		t.Fatalf("claimed sandbox's runtime ID %q names no spare", st.RuntimeID)
	}

	// The crash: den.json as the spare left it, the network under its ID.
	p := d.paths(spec.ID)
	old := st
	old.Dir, old.StartedAt = filepath.Join(d.sparesDir(), "gone", spareID), st.StartedAt.Add(-time.Minute)
	if _, err := writeState(p, old); err != nil {
		t.Fatal(err)
	}
	if err := d.cfg.Networks.Rename(spec.ID, spareID); err != nil {
		t.Fatal(err)
	}

	if err := d.Recover(ctx, h); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	got, err := readState(p)
	if err != nil || got.Dir != p.dir || !got.StartedAt.Equal(st.StartedAt) {
		t.Fatalf("den.json after Recover: %+v, %v; want the handle's (dir %s, started %v)", got, err, p.dir, st.StartedAt)
	}
	if _, ok := d.cfg.Networks.Get(spec.ID); !ok {
		t.Fatal("after Recover the sandbox has no network")
	}
	if !recorded(t, d, spec.ID) || recorded(t, d, spareID) {
		t.Fatalf("after Recover the network records do not name the sandbox %s alone", spec.ID)
	}
	if got := shell(t, d, spec.ID, "echo ok"); got != "ok\n" {
		t.Fatalf("exec after Recover: %q", got)
	}
}

// recorded reports whether the network records on disk (what a restart
// reads) name id.
func recorded(t *testing.T, d *Driver, id string) bool {
	t.Helper()
	ids, err := d.cfg.Networks.Recorded()
	if err != nil {
		t.Fatal(err)
	}
	return slices.Contains(ids, id)
}
