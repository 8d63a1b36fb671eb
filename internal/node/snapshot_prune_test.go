package node

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/snapshot"
	"github.com/denhq/den/internal/store"
)

// plant writes a file of n bytes at <snaps>/<rel>/mem.
func (e *env) plant(rel string, n int) {
	e.t.Helper()
	dir := filepath.Join(e.snaps, filepath.FromSlash(rel))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mem"), make([]byte, n), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// pruned is what the tests compare of a PruneItem.
type pruned struct {
	Kind, Owner string
	Generation  uint64
	Bytes       int64
	Reason      string
}

func prunedOf(rep PruneReport) []pruned {
	var out []pruned
	for _, it := range rep.Items {
		out = append(out, pruned{it.Kind, it.Owner, it.Generation, it.Bytes, it.Reason})
	}
	slices.SortFunc(out, func(a, b pruned) int {
		if a.Owner != b.Owner {
			return cmpString(a.Owner, b.Owner)
		}
		return int(a.Generation) - int(b.Generation)
	})
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestPruneSnapshots builds every kind of leftover the node can have
// between restarts and checks that prune removes exactly the
// unreferenced ones: never a pinned generation, a failed sandbox's state
// or a recorded snapshot object; and that a dry run removes nothing.
func TestPruneSnapshots(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// a: suspended twice; the record pins generation 2.
	e.start("a")
	for _, step := range []func(context.Context, string) error{e.suspend, e.resume, e.suspend} {
		if err := step(ctx, "a"); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.get("a").Snapshot.Generation; got != 2 {
		t.Fatalf("a pins generation %d, want 2", got)
	}
	e.plant("a/1", 100)   // older: a failed drop of older snapshots
	e.plant("a/3.tmp", 7) // a failed suspend whose abort failed
	e.plant("a/9", 5)     // sealed but newer than the pin: Recover's business
	// b: running, with a recorded snapshot object and an aborted suspend.
	e.start("b")
	e.snapshotOf("b", "snap-1", "")
	e.plant("b/1.tmp", 11)
	// f: failed, keeping what is left of its state.
	e.record("f", rest.StateFailed, "img")
	e.plant("f/1.tmp", 13)
	// Orphans: no record names them.
	e.plant("gone/3", 17)
	e.plant("objects/snap-x/1.tmp", 19)

	leftovers := []pruned{
		{snapshot.KindGeneration, "a", 1, 100, ReasonOlderGeneration},
		{snapshot.KindPending, "a", 3, 7, ReasonUnsealed},
		{snapshot.KindPending, "b", 1, 11, ReasonUnsealed},
	}
	orphans := []pruned{
		{snapshot.KindGeneration, "gone", 3, 17, ReasonNoSandbox},
		{snapshot.KindObjectPending, "snap-x", 1, 19, ReasonNoObject},
	}
	all := append(slices.Clone(leftovers), orphans...)

	t.Run("other tenant", func(t *testing.T) {
		rep, err := e.node.PruneSnapshots(ctx, PruneOptions{Tenant: "other"})
		if err != nil || len(rep.Items) != 0 {
			t.Fatalf("prune for another tenant: %+v, %v", rep, err)
		}
	})
	t.Run("dry run", func(t *testing.T) {
		before, err := e.node.SnapshotUsage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := e.node.PruneSnapshots(ctx, PruneOptions{DryRun: true, Orphans: true})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(all, prunedOf(rep)); d != "" {
			t.Fatalf("dry run (-want +got):\n%s", d)
		}
		if rep.Bytes != 100+7+11+17+19 {
			t.Fatalf("dry run bytes %d", rep.Bytes)
		}
		after, err := e.node.SnapshotUsage(ctx)
		if err != nil || after.Bytes != before.Bytes || len(after.Entries) != len(before.Entries) {
			t.Fatalf("a dry run changed the disk: %d -> %d bytes (%v)", before.Bytes, after.Bytes, err)
		}
	})
	t.Run("tenant", func(t *testing.T) {
		rep, err := e.node.PruneSnapshots(ctx, PruneOptions{Tenant: "t"})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(leftovers, prunedOf(rep)); d != "" {
			t.Fatalf("tenant prune (-want +got):\n%s", d)
		}
	})
	t.Run("orphans", func(t *testing.T) {
		rep, err := e.node.PruneSnapshots(ctx, PruneOptions{Orphans: true})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(orphans, prunedOf(rep)); d != "" {
			t.Fatalf("orphan prune (-want +got):\n%s", d)
		}
		for _, p := range []string{"gone", "objects/snap-x"} {
			if _, err := os.Stat(filepath.Join(e.snaps, p)); !os.IsNotExist(err) {
				t.Fatalf("orphan %s left: %v", p, err)
			}
		}
	})
	// What stays: the pin, the newer sealed one, the failed sandbox's
	// state and the recorded object, which still clones and resumes.
	for id, want := range map[string][]string{"a": {"2", "9"}, "b": nil, "f": {"1.tmp"}} {
		if got := e.generations(id); !slices.Equal(got, want) {
			t.Errorf("%s after prune: %v, want %v", id, got, want)
		}
	}
	rep, err := e.node.PruneSnapshots(ctx, PruneOptions{Orphans: true})
	if err != nil || len(rep.Items) != 0 {
		t.Fatalf("second prune: %+v, %v", rep, err)
	}
	if _, err := e.node.Resume(ctx, "a"); err != nil {
		t.Fatalf("resume after prune: %v", err)
	}
	e.checkGuest("a")
	e.recordClone("c1", "snap-1")
	if _, err := e.node.StartClones(ctx, "snap-1", []string{"c1"}); err != nil {
		t.Fatalf("clone after prune: %v", err)
	}
	e.checkGuest("c1")
}

func (e *env) suspend(ctx context.Context, id string) error {
	_, err := e.node.Suspend(ctx, id)
	return err
}

func (e *env) resume(ctx context.Context, id string) error {
	_, err := e.node.Resume(ctx, id)
	return err
}

// waitLockWaiters polls until key has want holders and waiters in the
// node's lock table.
func (e *env) waitLockWaiters(key string, want int) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.node.locks.mu.Lock()
		m := e.node.locks.locks[key]
		n := 0
		if m != nil {
			n = m.refs
		}
		e.node.locks.mu.Unlock()
		if n >= want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("lock %s: %d holders and waiters, want %d", key, n, want)
		}
		time.Sleep(time.Millisecond) // polling; the deadline bounds it
	}
}

// TestPruneWaitsForWritesInProgress: a suspend's unsealed directory and a
// snapshot object's directory, before their records say anything, are
// not leftovers. Prune waits for the operation (it takes the sandbox's
// lock), which then succeeds with its files intact.
func TestPruneWaitsForWritesInProgress(t *testing.T) {
	for _, tc := range []struct{ op, step string }{{"suspend", stepSeal}, {"snapshot", stepSealObject}} {
		t.Run(tc.op, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			e.start("a")
			reached, release := make(chan struct{}), make(chan struct{})
			e.node.beforeStep = func(op, step string) error {
				if op == tc.op && step == tc.step {
					close(reached)
					<-release
				}
				return nil
			}
			done := make(chan error, 1)
			go func() {
				if tc.op == "suspend" {
					done <- e.suspend(ctx, "a")
					return
				}
				_, err := e.node.CreateSnapshot(ctx, &store.SandboxSnapshot{ID: "snap-1", Tenant: "t", Sandbox: "a"})
				done <- err
			}()
			<-reached
			pruneDone := make(chan PruneReport, 1)
			go func() {
				rep, err := e.node.PruneSnapshots(ctx, PruneOptions{Orphans: true})
				if err != nil {
					t.Error(err)
				}
				pruneDone <- rep
			}()
			e.waitLockWaiters("a", 2) // the operation holds it, prune waits
			close(release)
			if err := <-done; err != nil {
				t.Fatalf("%s while prune waited: %v", tc.op, err)
			}
			if rep := <-pruneDone; len(rep.Items) != 0 {
				t.Fatalf("prune removed %+v", rep.Items)
			}
			e.node.beforeStep = nil
			if tc.op == "suspend" {
				if err := e.resume(ctx, "a"); err != nil {
					t.Fatal(err)
				}
			} else {
				e.recordClone("c1", "snap-1")
				if _, err := e.node.StartClones(ctx, "snap-1", []string{"c1"}); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
