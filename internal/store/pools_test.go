package store

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/internal/errdefs"
)

func newPoolRec(id, tenant, name string, created time.Time) *Pool {
	return &Pool{ID: id, Name: name, Tenant: tenant, Image: "busybox", Size: 3, CPUs: 1, MemoryMB: 256, DiskMB: 512, CreatedAt: created}
}

func TestPools(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	for i, rec := range []*Pool{
		newPoolRec("p1", "acme", "web", base),
		newPoolRec("p2", "acme", "", base.Add(time.Second)),
		newPoolRec("p3", "globex", "web", base.Add(2*time.Second)), // names are per tenant
	} {
		if err := s.PutPool(ctx, rec); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		if rec.ModifyIndex == 0 {
			t.Fatalf("put %d: no ModifyIndex", i)
		}
	}
	tests := []struct {
		name string
		rec  *Pool
		kind errdefs.Kind
		msg  string
	}{
		{"name taken", newPoolRec("p4", "acme", "web", base), errdefs.AlreadyExists, `pool name "web" is taken by pool p1`},
		{"no tenant", newPoolRec("p5", "", "", base), errdefs.InvalidArgument, "put pool: pool p5: tenant is required"},
		{"no image", &Pool{ID: "p6", Tenant: "acme", Size: 1}, errdefs.InvalidArgument, "put pool: pool p6: an image or a snapshot is required"},
		{"negative size", &Pool{ID: "p7", Tenant: "acme", Image: "busybox", Size: -1}, errdefs.InvalidArgument, "put pool: pool p7: size must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.PutPool(ctx, tt.rec)
			if errdefs.KindOf(err) != tt.kind || err.Error() != tt.msg {
				t.Fatalf("got %v (%s), want %s %q", err, errdefs.KindOf(err), tt.kind, tt.msg)
			}
		})
	}
	// A put of an existing ID replaces it (a resize), keeping its name.
	resized := newPoolRec("p1", "acme", "web", base)
	resized.Size = 7
	if err := s.PutPool(ctx, resized); err != nil {
		t.Fatalf("resize: %v", err)
	}
	snap := s.Snapshot()
	if got, err := snap.PoolByName("acme", "web"); err != nil || got.ID != "p1" || got.Size != 7 {
		t.Fatalf("acme's pool web after resize: %+v, %v", got, err)
	}
	list, err := snap.Pools("acme")
	if err != nil || len(list) != 2 || list[0].ID != "p1" || list[1].ID != "p2" {
		t.Fatalf("acme's pools: %v, %v", list, err)
	}
	changed := snap.PoolsChanged()
	if err := s.DeletePool(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("PoolsChanged did not fire on a delete")
	}
	if _, err := s.Snapshot().Pool("p1"); !errdefs.IsNotFound(err) {
		t.Fatalf("deleted pool: %v", err)
	}
	if err := s.DeletePool(ctx, "p1"); !errdefs.IsNotFound(err) || err.Error() != "pool p1 not found" {
		t.Fatalf("delete deleted pool: %v", err)
	}
	if all, _ := s.Snapshot().Pools(""); len(all) != 2 {
		t.Fatalf("every pool: %v", all)
	}
}

func TestFSMSnapshotRestoreKeepsPools(t *testing.T) {
	src := newTestFSM(t)
	for _, rec := range []*Pool{newPoolRec("p1", "acme", "web", base), newPoolRec("p2", "globex", "", base)} {
		if res := src.apply(t, cmdPutPool, poolCmd{Pool: rec}); res.Err != nil {
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
	want, _ := src.snapshot().Pools("")
	got, _ := dst.snapshot().Pools("")
	if d := cmp.Diff(want, got); d != "" || len(got) != 2 {
		t.Fatalf("restored pools (-want +got):\n%s", d)
	}
	if _, err := dst.snapshot().PoolByName("acme", "web"); err != nil {
		t.Fatalf("name index after restore: %v", err)
	}
}
