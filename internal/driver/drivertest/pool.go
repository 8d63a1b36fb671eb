package drivertest

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
)

// poolTests are the cases of driver.Pooler; each skips for drivers
// without it.
func (s *suite) poolTests() []testCase {
	return []testCase{
		{"PoolFillClaimRefill", s.testPoolFillClaimRefill},
		{"PoolUndeclare", s.testPoolUndeclare},
		{"PoolClone", s.testPoolClone},
		{"PoolClaim", s.testPoolClaim},
	}
}

// pooler returns d as a Pooler or skips t.
func pooler(t *testing.T, d driver.Driver) driver.Pooler {
	t.Helper()
	p, ok := d.(driver.Pooler)
	if !ok {
		t.Skipf("driver %s does not implement Pooler", d.Capabilities().Name)
	}
	return p
}

// poolReady is the Ready count PoolStatus reports for key (-1: absent).
func poolReady(p driver.Pooler, key string) int {
	for _, st := range p.PoolStatus() {
		if st.Key == key {
			return st.Ready
		}
	}
	return -1
}

// testPoolFillClaimRefill declares a pool, waits for it to fill, creates
// sandboxes of its shape with their own IDs, env and hostnames (as a cold
// Create gives them), and waits for the pool to refill.
func (s *suite) testPoolFillClaimRefill(t *testing.T) {
	d, spec := s.setup(t)
	p := pooler(t, d)
	ctx := testCtx(t)
	p.SetPools([]driver.Pool{{Key: "web", Spec: spec, Size: 2}})
	t.Cleanup(func() { p.SetPools(nil) })
	eventually(t, ctx, "the pool fills", func() bool { return poolReady(p, "web") == 2 })
	if diff := cmp.Diff([]driver.PoolStatus{{Key: "web", Ready: 2, Size: 2}}, p.PoolStatus()); diff != "" {
		t.Errorf("PoolStatus of a full pool (-want +got):\n%s", diff)
	}
	var ids []string
	for i, val := range []string{"one", "two"} {
		claimed := spec
		claimed.ID = newID(t)
		claimed.Env = map[string]string{"DEN_POOL_VAR": val}
		claimed.Hostname = "pooled-" + val
		s.create(t, ctx, d, claimed)
		ids = append(ids, claimed.ID)
		if got := mustShell(t, ctx, d, claimed.ID, `echo "$DEN_POOL_VAR"`).Stdout; got != val+"\n" {
			t.Errorf("claim %d: env DEN_POOL_VAR = %q, want %q", i, got, val)
		}
		if d.Capabilities().Isolation != "none" {
			if got := mustShell(t, ctx, d, claimed.ID, "hostname").Stdout; got != claimed.Hostname+"\n" {
				t.Errorf("claim %d: hostname %q, want %q", i, got, claimed.Hostname)
			}
		}
	}
	if d.Capabilities().Isolation != "none" {
		mustShell(t, ctx, d, ids[0], "echo mine > /pooled-file")
		if res, _ := Shell(ctx, d, ids[1], "cat /pooled-file"); res.ExitCode == 0 {
			t.Errorf("a file written in one claimed sandbox shows in another: %q", res.Stdout)
		}
	}
	if l, ok := d.(driver.Lister); ok {
		listed, err := l.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if !slices.Contains(listed, id) {
				t.Errorf("List = %q, want it to hold claimed sandbox %s", listed, id)
			}
		}
		for _, id := range listed {
			if strings.Contains(id, "spare") {
				t.Errorf("List holds %s: spares are the driver's own and not listed", id)
			}
		}
	}
	eventually(t, ctx, "the pool refills", func() bool { return poolReady(p, "web") == 2 })
}

// testPoolUndeclare checks that SetPools(nil) forgets the pools and that
// sandboxes claimed before live on.
func (s *suite) testPoolUndeclare(t *testing.T) {
	d, spec := s.setup(t)
	p := pooler(t, d)
	ctx := testCtx(t)
	p.SetPools([]driver.Pool{{Key: "a", Spec: spec, Size: 1}})
	eventually(t, ctx, "the pool fills", func() bool { return poolReady(p, "a") == 1 })
	s.create(t, ctx, d, spec)
	p.SetPools(nil)
	if st := p.PoolStatus(); len(st) != 0 {
		t.Errorf("PoolStatus after SetPools(nil) = %+v, want none", st)
	}
	mustShell(t, ctx, d, spec.ID, "true")
}

// testPoolClone declares a pool of clones of a checkpoint; a Clone of it
// with another ID comes up running with its own hostname.
func (s *suite) testPoolClone(t *testing.T) {
	d, spec := s.setup(t)
	p := pooler(t, d)
	sd := suspender(t, d)
	ctx := testCtx(t)
	s.create(t, ctx, d, spec)
	dir := checkpointDir(t)
	if err := sd.Checkpoint(ctx, spec.ID, dir); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	p.SetPools([]driver.Pool{{Key: "clones", Spec: spec, From: dir, Size: 1}})
	t.Cleanup(func() { p.SetPools(nil) })
	eventually(t, ctx, "the clone pool fills", func() bool { return poolReady(p, "clones") == 1 })
	clone := spec
	clone.ID = newID(t)
	clone.Hostname = ""
	h, err := sd.Clone(ctx, clone, dir)
	if err != nil {
		t.Fatalf("Clone from a pooled checkpoint: %v", err)
	}
	t.Cleanup(func() { _ = d.Destroy(ctx, clone.ID) })
	if h.ID != clone.ID {
		t.Fatalf("Clone returned handle %q, want %q", h.ID, clone.ID)
	}
	assertRunning(t, ctx, d, clone.ID)
	if d.Capabilities().Isolation != "none" {
		if got := mustShell(t, ctx, d, clone.ID, "hostname").Stdout; got != clone.ID+"\n" {
			t.Errorf("pooled clone's hostname %q, want %q", got, clone.ID)
		}
	}
}

// testPoolClaim checks driver.Claimer: nothing for a shape no pool keeps;
// from a full pool, a sandbox with its own ID and env that runs and is
// listed; Destroy removes it.
func (s *suite) testPoolClaim(t *testing.T) {
	d, spec := s.setup(t)
	p := pooler(t, d)
	c, ok := d.(driver.Claimer)
	if !ok {
		t.Skipf("driver %s does not implement Claimer", d.Capabilities().Name)
	}
	ctx := testCtx(t)
	other := spec
	other.MemoryMB++ // a shape no pool keeps
	if h, err := c.Claim(ctx, other); h != nil || err != nil {
		t.Fatalf("Claim of a shape without spares = %v, %v; want nothing", h, err)
	}
	p.SetPools([]driver.Pool{{Key: "claims", Spec: spec, Size: 1}})
	t.Cleanup(func() { p.SetPools(nil) })
	eventually(t, ctx, "the pool fills", func() bool { return poolReady(p, "claims") == 1 })
	claimed := spec
	claimed.ID = newID(t)
	claimed.Env = map[string]string{"DEN_CLAIM_VAR": "claimed"}
	h, err := c.Claim(ctx, claimed)
	if err != nil || h == nil {
		t.Fatalf("Claim from a full pool = %v, %v; want a sandbox", h, err)
	}
	t.Cleanup(func() { _ = d.Destroy(context.Background(), claimed.ID) })
	if h.ID != claimed.ID {
		t.Fatalf("Claim returned handle %q, want %q", h.ID, claimed.ID)
	}
	if got := mustShell(t, ctx, d, claimed.ID, `echo "$DEN_CLAIM_VAR"`).Stdout; got != "claimed\n" {
		t.Errorf("claimed sandbox: env DEN_CLAIM_VAR = %q, want %q", got, "claimed")
	}
	if l, ok := d.(driver.Lister); ok {
		listed, err := l.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(listed, claimed.ID) {
			t.Errorf("List = %q, want it to hold claimed sandbox %s", listed, claimed.ID)
		}
	}
	if err := d.Destroy(ctx, claimed.ID); err != nil {
		t.Fatalf("Destroy of a claimed sandbox: %v", err)
	}
	if _, err := d.Status(ctx, claimed.ID); !errdefs.IsNotFound(err) {
		t.Errorf("Status after Destroy: %v, want NotFound", err)
	}
}
