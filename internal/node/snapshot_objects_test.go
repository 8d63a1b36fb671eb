package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/snapshot"
	"github.com/denhq/den/internal/store"
)

// snapshotOf creates snapshot object snapID of running sandbox id.
func (e *env) snapshotOf(id, snapID, name string) *store.SandboxSnapshot {
	e.t.Helper()
	rec, err := e.node.CreateSnapshot(context.Background(), &store.SandboxSnapshot{ID: snapID, Name: name, Tenant: "t", Sandbox: id})
	if err != nil {
		e.t.Fatal(err)
	}
	return rec
}

// recordClone records sandbox id, to be cloned from snapshot snapID.
func (e *env) recordClone(id, snapID string) {
	e.t.Helper()
	sb := &store.Sandbox{ID: id, Tenant: "t", Image: "img", State: rest.StateStarting, Node: "n1", MemoryMB: 64, DiskMB: 64,
		CPUs: 1, TimeoutSec: 60, CreatedAt: time.Now(), FromSnapshot: snapID}
	if err := e.st.CreateSandbox(context.Background(), sb); err != nil {
		e.t.Fatal(err)
	}
}

func TestSnapshotObjectAndClones(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.start("src")
	rec := e.snapshotOf("src", "snap-1", "keep")
	if rec.Size == 0 || !strings.HasPrefix(rec.Digest, "sha256:") || rec.Image != "img" || rec.Node != "n1" || rec.MemoryMB != 64 {
		t.Fatalf("snapshot record: %+v", rec)
	}
	if got, err := e.st.Snapshot().SandboxSnapshotByName("t", "keep"); err != nil || got.ID != "snap-1" {
		t.Fatalf("stored snapshot by name: %+v, %v", got, err)
	}
	if sb := e.get("src"); sb.State != rest.StateRunning {
		t.Fatalf("source is %s after the snapshot, want running", sb.State)
	}
	e.checkGuest("src")
	if err := e.node.Destroy(ctx, "src"); err != nil {
		t.Fatal(err)
	}

	ids := []string{"c1", "c2", "c3", "c4", "c5", "c6"}
	for _, id := range ids {
		e.recordClone(id, "snap-1")
	}
	out, err := e.node.StartClones(ctx, "snap-1", ids)
	if err != nil {
		t.Fatal(err)
	}
	for i, sb := range out {
		if sb.ID != ids[i] || sb.State != rest.StateRunning || len(sb.Handle) == 0 || sb.ExpiresAt.IsZero() {
			t.Fatalf("clone %d: %+v", i, sb)
		}
		e.checkGuest(sb.ID)
	}

	if err := e.node.DeleteSnapshot(ctx, "snap-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.snaps, snapshot.ObjectsDir, "snap-1")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("files of a deleted snapshot: %v", err)
	}
	checkNodeErr(t, e.node.DeleteSnapshot(ctx, "snap-1"), errdefs.NotFound, "snapshot snap-1 not found")
	e.checkGuest("c1") // clones outlive their snapshot
}

func TestSnapshotErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.start("run")
	e.start("susp")
	if _, err := e.node.Suspend(ctx, "susp"); err != nil {
		t.Fatal(err)
	}
	e.snapshotOf("run", "snap-1", "taken")
	tests := []struct {
		name string
		rec  store.SandboxSnapshot
		kind errdefs.Kind
		msg  string
	}{
		{"unknown sandbox", store.SandboxSnapshot{ID: "s2", Tenant: "t", Sandbox: "nosuch"}, errdefs.NotFound, "sandbox nosuch not found"},
		{"suspended sandbox", store.SandboxSnapshot{ID: "s3", Tenant: "t", Sandbox: "susp"}, errdefs.FailedPrecondition,
			"sandbox susp is suspended: only a running sandbox can be snapshotted"},
		{"name taken", store.SandboxSnapshot{ID: "s4", Name: "taken", Tenant: "t", Sandbox: "run"}, errdefs.AlreadyExists,
			`record snapshot s4: snapshot name "taken" is taken by snapshot snap-1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.node.CreateSnapshot(ctx, &tt.rec)
			checkNodeErr(t, err, tt.kind, tt.msg)
			if _, err := os.Stat(filepath.Join(e.snaps, snapshot.ObjectsDir, tt.rec.ID)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a failed snapshot left files: %v", err)
			}
		})
	}
	if sb := e.get("run"); sb.State != rest.StateRunning {
		t.Errorf("run is %s after the failed calls", sb.State)
	}
}

func TestStartClonesRefusesDamagedSnapshot(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.start("src")
	rec := e.snapshotOf("src", "snap-1", "")
	dir := filepath.Join(e.snaps, snapshot.ObjectsDir, "snap-1", "1")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if en.Name() != snapshot.ManifestName {
			if err := os.WriteFile(filepath.Join(dir, en.Name()), []byte("garbage"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.recordClone("c1", rec.ID)
	_, err = e.node.StartClones(ctx, rec.ID, []string{"c1"})
	if errdefs.KindOf(err) != errdefs.FailedPrecondition || !strings.Contains(err.Error(), "is damaged") {
		t.Fatalf("clone from a damaged snapshot: %v", err)
	}
	if sb := e.get("c1"); sb.State != rest.StateFailed || !strings.Contains(sb.Reason, "is damaged") {
		t.Fatalf("clone of a damaged snapshot: state %s, reason %q", sb.State, sb.Reason)
	}
	e.recordClone("c2", "nosuch")
	_, err = e.node.StartClones(ctx, "nosuch", []string{"c2"})
	checkNodeErr(t, err, errdefs.NotFound, "snapshot nosuch not found")
}

func TestRecoverRemovesOrphanSnapshotObjects(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.start("src")
	e.snapshotOf("src", "snap-1", "")
	orphan := filepath.Join(e.snaps, snapshot.ObjectsDir, "snap-gone", "1.tmp")
	if err := os.MkdirAll(orphan, 0o700); err != nil {
		t.Fatal(err)
	}
	e.restart()
	if err := e.node.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(orphan)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("orphan snapshot object: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.snaps, snapshot.ObjectsDir, "snap-1", "1")); err != nil {
		t.Fatalf("recorded snapshot object after Recover: %v", err)
	}
}

func TestStartClonesRecordsEachFailure(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.start("src")
	e.snapshotOf("src", "snap-1", "")
	e.recordClone("ok", "snap-1")
	e.recordClone("bad", "snap-1")
	e.failClone = func(ctx context.Context, spec driver.Spec, dir string) error {
		if spec.ID == "bad" {
			return errdefs.New(errdefs.Unavailable, "no room")
		}
		return nil
	}
	out, err := e.node.StartClones(ctx, "snap-1", []string{"ok", "bad"})
	checkNodeErr(t, err, errdefs.Unavailable, "clone sandbox bad from snapshot snap-1: no room")
	if out[0] == nil || out[0].State != rest.StateRunning || out[1] != nil {
		t.Fatalf("records: %+v, %+v", out[0], out[1])
	}
	if sb := e.get("bad"); sb.State != rest.StateFailed || sb.Reason != "clone sandbox bad from snapshot snap-1: no room" {
		t.Fatalf("failed clone: state %s, reason %q", sb.State, sb.Reason)
	}
}
