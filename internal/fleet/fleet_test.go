package fleet

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/fake"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/node"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/nodelink/linktest"
	"github.com/denhq/den/internal/noderpc"
	"github.com/denhq/den/internal/scheduler"
	"github.com/denhq/den/internal/server"
	"github.com/denhq/den/internal/store"
)

// A Fleet is the data plane of den server.
var (
	_ server.Node   = (*Fleet)(nil)
	_ server.Placer = (*Fleet)(nil)
)

type images struct{}

func (images) Rootfs(ref string) (driver.Image, error) { return driver.Image{Ref: ref}, nil }

// env is a server's store and fleet, and agents' nodes joined over links.
type env struct {
	t        *testing.T
	st       *store.Store
	fleet    *Fleet
	mu       sync.Mutex
	sessions map[string]*nodelink.Session
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{Dir: t.TempDir(), NodeID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := fleetEnv(st)
	e.t = t
	return e
}

// fleetEnv is a fleet over st whose sessions are the env's.
func fleetEnv(st *store.Store) *env {
	e := &env{st: st, sessions: map[string]*nodelink.Session{}}
	e.fleet = New(Config{Store: st, Sessions: func(id string) (*nodelink.Session, bool) {
		e.mu.Lock()
		defer e.mu.Unlock()
		s, ok := e.sessions[id]
		return s, ok
	}})
	return e
}

// join connects node id (a fake driver) and joins it with capacity.
func (e *env) join(id string, capacity scheduler.Resources) { e.joinPool(id, "", capacity) }

// joinPool is join into node pool pool.
func (e *env) joinPool(id, pool string, capacity scheduler.Resources) {
	e.t.Helper()
	serverMux, agentMux := nodelink.NewMux(), nodelink.NewMux()
	noderpc.ServeRecords(serverMux, e.st)
	e.fleet.ServeStarts(serverMux)
	serverEnd, agentEnd := linktest.Connect(e.t, serverMux, agentMux, id)
	link := &noderpc.Link{}
	link.Set(agentEnd)
	drv, err := fake.New(fake.Config{Dir: e.t.TempDir()})
	if err != nil {
		e.t.Fatal(err)
	}
	n, err := node.New(node.Config{ID: id, Driver: drv, Images: images{}, Records: noderpc.RemoteRecords(link),
		SnapshotDir: filepath.Join(e.t.TempDir(), "snapshots")})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { n.Close(); drv.Close() })
	noderpc.ServeNode(agentMux, n)
	e.mu.Lock()
	e.sessions[id] = serverEnd
	e.mu.Unlock()
	if err := e.fleet.Join(context.Background(), NodeSpec{ID: id, Pool: pool, Capacity: capacity}); err != nil {
		e.t.Fatal(err)
	}
}

// create places, records and starts a sandbox of tenant t as the server does.
func (e *env) create(id string, cpus float64, memMB int64) (*store.Sandbox, error) {
	return e.createFor("t", id, cpus, memMB)
}

func (e *env) createFor(tenant, id string, cpus float64, memMB int64) (*store.Sandbox, error) {
	return e.createWaiting(context.Background(), tenant, id, cpus, memMB, 0)
}

// createWaiting is createFor that waits up to wait for room.
func (e *env) createWaiting(ctx context.Context, tenant, id string, cpus float64, memMB int64, wait time.Duration) (*store.Sandbox, error) {
	sb := &store.Sandbox{ID: id, Tenant: tenant, Image: "img", Runtime: fake.Name, CPUs: cpus, MemoryMB: memMB, DiskMB: 64,
		TimeoutSec: 600, CreatedAt: time.Now(), AccessToken: "tok"}
	undo, err := e.fleet.Place(ctx, sb, wait)
	if err != nil {
		return nil, err
	}
	rec, err := e.fleet.StartClaimed(ctx, sb, func(rec *store.Sandbox) error { return e.st.CreateSandbox(ctx, rec) })
	if err != nil {
		undo()
		return nil, err
	}
	return rec, nil
}

func TestPlacesAcrossNodesWithoutOvercommit(t *testing.T) {
	e := newEnv(t)
	size := scheduler.Resources{CPUMillis: 2000, MemoryMB: 2048, DiskMB: 1 << 20}
	e.join("n1", size)
	e.join("n2", size)
	on := map[string]int{}
	for i := range 4 {
		sb, err := e.create(fmt.Sprintf("sb-%d", i), 1, 1024)
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		if sb.State != store.StateRunning {
			t.Fatalf("sb-%d is %s", i, sb.State)
		}
		on[sb.Node]++
	}
	if on["n1"] != 2 || on["n2"] != 2 {
		t.Fatalf("placements by node %v, want 2 and 2", on)
	}
	if _, err := e.create("sb-full", 1, 1024); !errdefs.Is(err, errdefs.ResourceExhausted) {
		t.Fatalf("a fifth sandbox on two full nodes: %v, want ResourceExhausted", err)
	}
	if err := e.fleet.Scheduler().Working().Check(); err != nil {
		t.Fatal(err)
	}
	// Destroying one frees room for the next.
	if err := e.fleet.Destroy(context.Background(), "sb-0"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Snapshot().Sandbox("sb-0"); !errdefs.IsNotFound(err) {
		t.Fatalf("destroyed record: %v", err)
	}
	if _, err := e.create("sb-4", 1, 1024); err != nil {
		t.Fatalf("create after a destroy: %v", err)
	}
}

func TestDrainedAndLeftNodesTakeNothing(t *testing.T) {
	e := newEnv(t)
	size := scheduler.Resources{CPUMillis: 8000, MemoryMB: 8192, DiskMB: 1 << 20}
	e.join("n1", size)
	e.join("n2", size)
	if err := e.fleet.Drain("n1"); err != nil {
		t.Fatal(err)
	}
	e.fleet.Leave("n2")
	if _, err := e.create("sb-1", 1, 256); !errdefs.Is(err, errdefs.ResourceExhausted) {
		t.Fatalf("create with one node draining and one gone: %v", err)
	}
	if err := e.fleet.Undrain("n1"); err != nil {
		t.Fatal(err)
	}
	sb, err := e.create("sb-2", 1, 256)
	if err != nil || sb.Node != "n1" {
		t.Fatalf("create after undrain: %+v %v", sb, err)
	}
}

func TestRejoinRestoresPlacements(t *testing.T) {
	e := newEnv(t)
	size := scheduler.Resources{CPUMillis: 2000, MemoryMB: 2048, DiskMB: 1 << 20}
	e.join("n1", size)
	for i := range 2 {
		if _, err := e.create(fmt.Sprintf("sb-%d", i), 1, 1024); err != nil {
			t.Fatal(err)
		}
	}
	// A new server (say, after a failover) rebuilds its scheduler from
	// the store when the node joins it: the node is full there too.
	e.fleet = New(Config{Store: e.st, Sessions: e.fleet.cfg.Sessions})
	if err := e.fleet.Join(context.Background(), NodeSpec{ID: "n1", Capacity: size}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.create("sb-x", 1, 1024); !errdefs.Is(err, errdefs.ResourceExhausted) {
		t.Fatalf("create on a node full of restored sandboxes: %v", err)
	}
	if got := e.fleet.Scheduler().Working().Placements(scheduler.SharedPool); got != 2 {
		t.Fatalf("restored %d placements, want 2", got)
	}
}

func TestSandboxOfMissingNode(t *testing.T) {
	e := newEnv(t)
	sb := &store.Sandbox{ID: "orphan", Tenant: "t", Image: "img", Node: "gone", CPUs: 1, MemoryMB: 64, DiskMB: 64, TimeoutSec: 60, CreatedAt: time.Now()}
	if err := e.st.CreateSandbox(context.Background(), sb); err != nil {
		t.Fatal(err)
	}
	if _, err := e.fleet.DialGuest(context.Background(), "orphan"); !errdefs.Is(err, errdefs.Unavailable) {
		t.Fatalf("dial a sandbox of a missing node: %v", err)
	}
	if err := e.fleet.Destroy(context.Background(), "orphan"); !errdefs.Is(err, errdefs.Unavailable) {
		t.Fatalf("destroy a live sandbox of a missing node: %v, want Unavailable", err)
	}
	// Once reported lost it can be removed.
	cur, _ := e.st.Snapshot().Sandbox("orphan")
	cur.State, cur.Reason = store.StateFailed, "node lost"
	if err := e.st.UpdateSandbox(context.Background(), cur); err != nil {
		t.Fatal(err)
	}
	if err := e.fleet.Destroy(context.Background(), "orphan"); err != nil {
		t.Fatalf("destroy a lost sandbox: %v", err)
	}
	if _, err := e.fleet.Runtime(""); !errdefs.Is(err, errdefs.Unavailable) {
		t.Fatalf("runtime with no nodes: %v", err)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.join("n1", scheduler.Resources{CPUMillis: 2000, MemoryMB: 2048, DiskMB: 1 << 20})
	if _, err := e.create("sb-1", 1, 1024); err != nil {
		t.Fatal(err)
	}
	if _, err := e.create("sb-2", 4, 1024); err == nil {
		t.Fatal("a sandbox larger than the node was placed")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(e.fleet.Metrics())
	text := gatherText(t, reg)
	for _, want := range []string{`den_placements_total 1`, `den_placement_failures_total 1`, `den_nodes{status="up"} 1`,
		`den_nodes{status="down"} 0`, `den_pool_used{pool="shared",resource="cpu_millis"} 1000`,
		`den_pool_capacity{pool="shared",resource="memory_mb"} 2048`, `den_pool_parked_requests{pool="shared"} 0`} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
}

func gatherText(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

func TestDedicatedPools(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	size := scheduler.Resources{CPUMillis: 4000, MemoryMB: 4096, DiskMB: 1 << 20}
	// A node of a pool no tenant owns waits.
	e.joinPool("acme-1", "acme", size)
	e.join("shared-1", size)
	for i := range 3 {
		sb, err := e.createFor("globex", fmt.Sprintf("g-%d", i), 1, 1024)
		if err != nil || sb.Node != "shared-1" {
			t.Fatalf("globex's sandbox: %+v %v", sb, err)
		}
	}
	if err := e.st.PutTenant(ctx, &store.Tenant{ID: "acme", Placement: store.Placement{NodePools: []string{"acme"}}}); err != nil {
		t.Fatal(err)
	}
	e.fleet.SyncPools()
	on := map[string]int{}
	for i := range 4 {
		sb, err := e.createFor("acme", fmt.Sprintf("a-%d", i), 1, 1024)
		if err != nil {
			t.Fatalf("acme's sandbox %d: %v", i, err)
		}
		on[sb.Node]++
	}
	if on["acme-1"] != 4 {
		t.Fatalf("acme's sandboxes by node: %v, want all 4 on its own node", on)
	}
	// acme's pool is full and it may not overflow; globex never gets
	// acme's node, even when the shared node is full.
	if _, err := e.createFor("acme", "a-x", 1, 1024); !errdefs.Is(err, errdefs.ResourceExhausted) {
		t.Fatalf("acme past its pool: %v", err)
	}
	if _, err := e.createFor("globex", "g-3", 1, 1024); err != nil {
		t.Fatal(err)
	}
	if _, err := e.createFor("globex", "g-x", 1, 1024); !errdefs.Is(err, errdefs.ResourceExhausted) {
		t.Fatalf("globex with the shared node full: %v (acme's node must not take it)", err)
	}
	// With overflow, acme's next sandbox goes to the shared nodes once
	// they have room.
	if err := e.fleet.Destroy(ctx, "g-0"); err != nil {
		t.Fatal(err)
	}
	if err := e.st.PutTenant(ctx, &store.Tenant{ID: "acme", Placement: store.Placement{NodePools: []string{"acme"}, OverflowToShared: true}}); err != nil {
		t.Fatal(err)
	}
	e.fleet.SyncPools()
	if sb, err := e.createFor("acme", "a-y", 1, 1024); err != nil || sb.Node != "shared-1" {
		t.Fatalf("acme overflowing: %+v %v", sb, err)
	}
	// The invariant, from the store: no sandbox of another tenant on
	// acme's node.
	all, _, err := e.st.Snapshot().Sandboxes(store.SandboxFilter{Node: "acme-1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, sb := range all {
		if sb.Tenant != "acme" {
			t.Fatalf("sandbox %s of %s on acme's node", sb.ID, sb.Tenant)
		}
	}
}

// TestCreatesWaitForRoom: a create with a wait parks when the nodes are
// full and is placed, first come first served, when a destroy frees room;
// one whose wait runs out gets ResourceExhausted and holds nothing; a
// cancelled one gets Canceled.
func TestCreatesWaitForRoom(t *testing.T) {
	e := newEnv(t)
	e.join("n1", scheduler.Resources{CPUMillis: 2000, MemoryMB: 2048, DiskMB: 1 << 20})
	for _, id := range []string{"a", "b"} {
		if _, err := e.create(id, 1, 1024); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.createWaiting(context.Background(), "t", "short", 1, 1024, 50*time.Millisecond); !errdefs.Is(err, errdefs.ResourceExhausted) || !strings.Contains(err.Error(), "within 50ms") {
		t.Fatalf("a create whose wait runs out: %v, want ResourceExhausted within 50ms", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancelled := make(chan error, 1)
	go func() {
		_, err := e.createWaiting(ctx, "t", "cancelled", 1, 1024, time.Minute)
		cancelled <- err
	}()
	waitParked(t, e, 1)
	type result struct {
		sb  *store.Sandbox
		err error
	}
	first, second := make(chan result, 1), make(chan result, 1)
	go func() {
		sb, err := e.createWaiting(context.Background(), "t", "first", 1, 1024, time.Minute)
		first <- result{sb, err}
	}()
	waitParked(t, e, 2)
	go func() {
		sb, err := e.createWaiting(context.Background(), "t", "second", 1, 1024, time.Minute)
		second <- result{sb, err}
	}()
	waitParked(t, e, 3)
	cancel()
	if err := <-cancelled; !errdefs.Is(err, errdefs.Canceled) {
		t.Fatalf("a cancelled waiting create: %v, want Canceled", err)
	}
	if err := e.fleet.Destroy(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	r := <-first
	if r.err != nil || r.sb.State != store.StateRunning || r.sb.Node != "n1" {
		t.Fatalf("the first waiting create after a destroy: %+v, %v", r.sb, r.err)
	}
	select {
	case r := <-second:
		t.Fatalf("the second waiting create went ahead with no room: %+v, %v", r.sb, r.err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := e.fleet.Destroy(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	if r := <-second; r.err != nil || r.sb.State != store.StateRunning {
		t.Fatalf("the second waiting create: %+v, %v", r.sb, r.err)
	}
	if err := e.fleet.Scheduler().Working().Check(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.create("full", 1, 1024); !errdefs.Is(err, errdefs.ResourceExhausted) {
		t.Fatalf("the node is full again, but a create got %v", err)
	}
}

// waitParked waits until n creates are parked in the shared pool.
func waitParked(t *testing.T, e *env, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.fleet.Scheduler().Parked(scheduler.SharedPool) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d creates parked, want %d", e.fleet.Scheduler().Parked(scheduler.SharedPool), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
