package store

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/internal/errdefs"
)

func newSnapshotRec(id, tenant, name string, created time.Time) *SandboxSnapshot {
	return &SandboxSnapshot{ID: id, Name: name, Tenant: tenant, Sandbox: "sb-" + id, Node: "node-1", Image: "busybox",
		CPUs: 1, MemoryMB: 256, DiskMB: 512, Env: map[string]string{"K": "V"}, Size: 4096, Digest: "sha256:00", CreatedAt: created}
}

func TestSandboxSnapshots(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	for i, rec := range []*SandboxSnapshot{
		newSnapshotRec("s1", "acme", "one", base),
		newSnapshotRec("s2", "acme", "", base.Add(time.Second)),
		newSnapshotRec("s3", "globex", "one", base.Add(2*time.Second)), // names are per tenant
	} {
		if err := s.CreateSandboxSnapshot(ctx, rec); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		if rec.ModifyIndex == 0 {
			t.Fatalf("create %d: no ModifyIndex", i)
		}
	}
	tests := []struct {
		name string
		rec  *SandboxSnapshot
		kind errdefs.Kind
		msg  string
	}{
		{"duplicate id", newSnapshotRec("s1", "acme", "", base), errdefs.AlreadyExists, "snapshot s1 already exists"},
		{"name taken", newSnapshotRec("s4", "acme", "one", base), errdefs.AlreadyExists, `snapshot name "one" is taken by snapshot s1`},
		{"no tenant", newSnapshotRec("s5", "", "", base), errdefs.InvalidArgument, "create snapshot: snapshot s5: tenant is required"},
		{"no digest", &SandboxSnapshot{ID: "s6", Tenant: "acme"}, errdefs.InvalidArgument, "create snapshot: snapshot s6: digest is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.CreateSandboxSnapshot(ctx, tt.rec)
			if errdefs.KindOf(err) != tt.kind || err.Error() != tt.msg {
				t.Fatalf("got %v (%s), want %s %q", err, errdefs.KindOf(err), tt.kind, tt.msg)
			}
		})
	}
	snap := s.Snapshot()
	list, err := snap.SandboxSnapshots("acme")
	if err != nil || len(list) != 2 || list[0].ID != "s1" || list[1].ID != "s2" {
		t.Fatalf("acme's snapshots: %v, %v", list, err)
	}
	if got, err := snap.SandboxSnapshotByName("globex", "one"); err != nil || got.ID != "s3" {
		t.Fatalf("globex's snapshot one: %+v, %v", got, err)
	}
	if err := s.DeleteSandboxSnapshot(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshot().SandboxSnapshot("s1"); !errdefs.IsNotFound(err) {
		t.Fatalf("deleted snapshot: %v", err)
	}
	if err := s.DeleteSandboxSnapshot(ctx, "s1"); !errdefs.IsNotFound(err) || err.Error() != "snapshot s1 not found" {
		t.Fatalf("delete deleted snapshot: %v", err)
	}
	// The name is free again.
	if err := s.CreateSandboxSnapshot(ctx, newSnapshotRec("s7", "acme", "one", base)); err != nil {
		t.Fatalf("reuse the name of a deleted snapshot: %v", err)
	}
}

func TestFSMSnapshotRestoreKeepsSnapshotObjects(t *testing.T) {
	src := newTestFSM(t)
	for _, rec := range []*SandboxSnapshot{newSnapshotRec("s1", "acme", "one", base), newSnapshotRec("s2", "globex", "", base)} {
		if res := src.apply(t, cmdCreateSnapshot, snapshotCmd{Snapshot: rec}); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	fs, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := fs.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	dst := newTestFSM(t)
	if err := dst.Restore(readCloser{&sink}); err != nil {
		t.Fatal(err)
	}
	want, _ := src.snapshot().SandboxSnapshots("")
	got, _ := dst.snapshot().SandboxSnapshots("")
	if d := cmp.Diff(want, got); d != "" || len(got) != 2 {
		t.Fatalf("restored snapshots (-want +got):\n%s", d)
	}
	if _, err := dst.snapshot().SandboxSnapshotByName("acme", "one"); err != nil {
		t.Fatalf("name index after restore: %v", err)
	}
}
