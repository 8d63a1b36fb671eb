package store

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/internal/errdefs"
)

func TestTenants(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	acme := &Tenant{ID: "acme", Quota: Quota{Sandboxes: 2, VCPUs: 4, MemoryMB: 2048, Snapshots: 3}, RateLimit: RateLimit{PerSecond: 5, Burst: 10}, CreatedAt: base}
	if err := s.PutTenant(ctx, acme); err != nil || acme.ModifyIndex == 0 {
		t.Fatalf("put acme: %v (index %d)", err, acme.ModifyIndex)
	}
	if err := s.PutTenant(ctx, &Tenant{ID: "globex", CreatedAt: base}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []*APIKey{{ID: "k1", Tenant: "acme", Hash: "h1"}, {ID: "k2", Tenant: "acme", Hash: "h2"}, {ID: "k3", Tenant: "globex", Hash: "h3"}} {
		if err := s.PutAPIKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		rec  *Tenant
		want string
	}{
		{&Tenant{ID: "Acme"}, `tenant name "Acme" is invalid`},
		{&Tenant{ID: ""}, `tenant name "" is invalid`},
		{&Tenant{ID: "x", Quota: Quota{Sandboxes: -1}}, "quotas must not be negative"},
		{&Tenant{ID: "x", RateLimit: RateLimit{PerSecond: -1}}, "rate limit must not be negative"},
	} {
		err := s.PutTenant(ctx, tt.rec)
		if errdefs.KindOf(err) != errdefs.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("put %+v: %v, want InvalidArgument %q", tt.rec, err, tt.want)
		}
	}
	snap := s.Snapshot()
	got, err := snap.Tenant("acme")
	if err != nil || got.Quota != acme.Quota || got.RateLimit != acme.RateLimit {
		t.Fatalf("get acme: %+v, %v", got, err)
	}
	list, _ := snap.Tenants()
	if len(list) != 2 || list[0].ID != "acme" || list[1].ID != "globex" {
		t.Fatalf("tenants: %+v", list)
	}
	for _, k := range []*SSHKey{newSSHKeyRec("s1", "acme", "laptop", "SHA256:a", base), newSSHKeyRec("s2", "globex", "laptop", "SHA256:b", base)} {
		if err := s.PutSSHKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	// Deleting a tenant deletes its keys, and only its keys.
	if err := s.DeleteTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	snap = s.Snapshot()
	if _, err := snap.Tenant("acme"); !errdefs.Is(err, errdefs.NotFound) {
		t.Fatalf("acme after delete: %v", err)
	}
	if keys := snap.APIKeys("acme"); len(keys) != 0 {
		t.Fatalf("acme's keys outlived it: %+v", keys)
	}
	if keys := snap.APIKeys("globex"); len(keys) != 1 {
		t.Fatalf("globex's keys: %+v", keys)
	}
	if keys, _ := snap.SSHKeys("acme"); len(keys) != 0 {
		t.Fatalf("acme's SSH keys outlived it: %+v", keys)
	}
	if keys, _ := snap.SSHKeys("globex"); len(keys) != 1 {
		t.Fatalf("globex's SSH keys: %+v", keys)
	}
	if err := s.DeleteTenant(ctx, "acme"); !errdefs.Is(err, errdefs.NotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if k, err := snap.APIKey("k3"); err != nil || k.Tenant != "globex" {
		t.Fatalf("APIKey(k3): %+v, %v", k, err)
	}
}

func TestFSMSnapshotRestoreKeepsTenants(t *testing.T) {
	src := newTestFSM(t)
	for _, rec := range []*Tenant{{ID: "acme", Quota: Quota{Sandboxes: 1}, CreatedAt: base}, {ID: "globex", CreatedAt: base}} {
		if res := src.apply(t, cmdPutTenant, tenantCmd{Tenant: rec}); res.Err != nil {
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
	want, _ := src.snapshot().Tenants()
	got, _ := dst.snapshot().Tenants()
	if d := cmp.Diff(want, got); d != "" || len(got) != 2 {
		t.Fatalf("restored tenants (-want +got):\n%s", d)
	}
}

func TestTenantNodePools(t *testing.T) {
	st := openTest(t)
	ctx := context.Background()
	a := &Tenant{ID: "a", Placement: Placement{NodePools: []string{"gpu", "a-only"}, OverflowToShared: true}}
	if err := st.PutTenant(ctx, a); err != nil {
		t.Fatal(err)
	}
	snap := st.Snapshot()
	changed := snap.TenantsChanged()
	if err := st.PutTenant(ctx, &Tenant{ID: "b", Placement: Placement{NodePools: []string{"gpu"}}}); !errdefs.Is(err, errdefs.Conflict) {
		t.Fatalf("a second owner of pool gpu: %v, want Conflict", err)
	}
	for _, bad := range [][]string{{"shared"}, {"x", "x"}, {"Bad_Name"}} {
		if err := st.PutTenant(ctx, &Tenant{ID: "c", Placement: Placement{NodePools: bad}}); !errdefs.Is(err, errdefs.InvalidArgument) {
			t.Errorf("node pools %v: %v, want InvalidArgument", bad, err)
		}
	}
	if err := st.PutTenant(ctx, &Tenant{ID: "b", Placement: Placement{NodePools: []string{"b-only"}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("TenantsChanged did not fire after a put")
	}
	got, err := st.Snapshot().Tenant("a")
	if err != nil || !slices.Equal(got.Placement.NodePools, []string{"gpu", "a-only"}) || !got.Placement.OverflowToShared {
		t.Fatalf("tenant a: %+v %v", got, err)
	}
}
