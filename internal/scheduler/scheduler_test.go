package scheduler

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/internal/errdefs"
)

func gib(cpus, gb int64) Resources {
	return Resources{CPUMillis: cpus * 1000, MemoryMB: gb * 1024, DiskMB: gb * 4 * 1024}
}

func mustNode(t testing.TB, s *Scheduler, n Node) {
	t.Helper()
	if err := s.UpsertNode(n); err != nil {
		t.Fatalf("UpsertNode(%s): %v", n.ID, err)
	}
}

func mustPlace(t testing.TB, s *Scheduler, req Request) Placement {
	t.Helper()
	p, err := s.Place(req)
	if err != nil {
		t.Fatalf("Place(%s): %v", req.SandboxID, err)
	}
	return p
}

func mustCheck(t testing.TB, s *Scheduler) {
	t.Helper()
	if err := s.Working().Check(); err != nil {
		t.Fatalf("invariants: %v", err)
	}
}

// wantErr asserts the exact kind and message of err.
func wantErr(t *testing.T, err error, kind errdefs.Kind, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want %v %q", kind, msg)
	}
	if got := errdefs.KindOf(err); got != kind || err.Error() != msg {
		t.Fatalf("err = %v %q, want %v %q", got, err.Error(), kind, msg)
	}
}

func TestFeasibilityByClass(t *testing.T) {
	s := New()
	for i := range 10 {
		n := Node{ID: fmt.Sprintf("n%d", i), Capacity: gib(64, 256), Runtimes: []string{"gvisor"}, Labels: map[string]string{"region": "a"}}
		if i%5 == 0 {
			n.Runtimes = []string{"qemu", "gvisor"}
			n.Labels = map[string]string{"region": "b", "gpu": "h100"}
		}
		mustNode(t, s, n)
	}
	tests := []struct {
		name  string
		cons  *Constraints
		nodes map[string]bool // the nodes it may land on
	}{
		{"any", nil, nil},
		{"gvisor", NewConstraints("gvisor", nil), nil},
		{"qemu", NewConstraints("qemu", nil), map[string]bool{"n0": true, "n5": true}},
		{"gpu label", NewConstraints("", map[string]string{"gpu": "h100"}), map[string]bool{"n0": true, "n5": true}},
		{"region a", NewConstraints("gvisor", map[string]string{"region": "a"}), map[string]bool{"n1": true, "n2": true, "n3": true, "n4": true, "n6": true, "n7": true, "n8": true, "n9": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range 6 {
				p := mustPlace(t, s, Request{SandboxID: fmt.Sprintf("%s-%d", tt.name, i), Size: gib(1, 1), Constraints: tt.cons})
				if tt.nodes != nil && !tt.nodes[p.NodeID] {
					t.Fatalf("placed on %s, want one of %v", p.NodeID, tt.nodes)
				}
			}
		})
	}
	_, err := s.Place(Request{SandboxID: "x", Size: gib(1, 1), Constraints: NewConstraints("firecracker", nil)})
	wantErr(t, err, errdefs.ResourceExhausted, "no node fits sandbox x")
	pl := s.routes.Load().pools[SharedPool]
	if got := len(pl.work.classes); got != 2 {
		t.Fatalf("10 nodes of 2 attribute sets made %d classes, want 2", got)
	}
	if got := len(pl.elig); got != 6 {
		t.Fatalf("feasibility cache holds %d constraint sets, want 6 (one per distinct constraints)", got)
	}
	mustCheck(t, s)
}

func dedicatedSetup(t *testing.T, overflow bool) *Scheduler {
	t.Helper()
	s := New()
	if err := s.AddPool(Pool{Name: "acme", Tenant: "acme", OverflowToShared: overflow}); err != nil {
		t.Fatal(err)
	}
	mustNode(t, s, Node{ID: "d1", Pool: "acme", Capacity: gib(4, 16)})
	mustNode(t, s, Node{ID: "s1", Capacity: gib(4, 16)})
	return s
}

func TestDedicatedPools(t *testing.T) {
	t.Run("tenant fills its pool first then fails without overflow", func(t *testing.T) {
		s := dedicatedSetup(t, false)
		for i := range 4 {
			if p := mustPlace(t, s, Request{SandboxID: fmt.Sprint("a", i), Tenant: "acme", Size: gib(1, 4)}); p.NodeID != "d1" || p.Pool != "acme" {
				t.Fatalf("acme sandbox on %s/%s, want acme/d1", p.Pool, p.NodeID)
			}
		}
		_, err := s.Place(Request{SandboxID: "a4", Tenant: "acme", Size: gib(1, 4)})
		wantErr(t, err, errdefs.ResourceExhausted, "no node fits sandbox a4")
		mustCheck(t, s)
	})
	t.Run("tenant overflows to shared when its policy says so", func(t *testing.T) {
		s := dedicatedSetup(t, true)
		for i := range 4 {
			mustPlace(t, s, Request{SandboxID: fmt.Sprint("a", i), Tenant: "acme", Size: gib(1, 4)})
		}
		if p := mustPlace(t, s, Request{SandboxID: "a4", Tenant: "acme", Size: gib(1, 4)}); p.NodeID != "s1" || p.Pool != SharedPool {
			t.Fatalf("overflow on %s/%s, want shared/s1", p.Pool, p.NodeID)
		}
		mustCheck(t, s)
	})
	t.Run("shared requests never land on dedicated nodes", func(t *testing.T) {
		s := dedicatedSetup(t, true)
		for i := range 4 {
			if p := mustPlace(t, s, Request{SandboxID: fmt.Sprint("o", i), Tenant: "other", Size: gib(1, 4)}); p.NodeID != "s1" {
				t.Fatalf("shared sandbox on %s, want s1", p.NodeID)
			}
		}
		_, err := s.Place(Request{SandboxID: "o4", Tenant: "other", Size: gib(1, 4)})
		wantErr(t, err, errdefs.ResourceExhausted, "no node fits sandbox o4")
		if used, _ := s.Working().Usage("acme"); used != (Resources{}) {
			t.Fatalf("dedicated pool used %+v by another tenant", used)
		}
		mustCheck(t, s)
	})
	t.Run("bad pools", func(t *testing.T) {
		s := dedicatedSetup(t, false)
		wantErr(t, s.AddPool(Pool{Name: "acme", Tenant: "x"}), errdefs.AlreadyExists, "pool acme already exists")
		wantErr(t, s.AddPool(Pool{Name: SharedPool, Tenant: "x"}), errdefs.InvalidArgument,
			`pool "shared": a dedicated pool needs a name other than "shared" and a tenant`)
		wantErr(t, s.UpsertNode(Node{ID: "z", Pool: "nope", Capacity: gib(1, 1)}), errdefs.NotFound, "pool nope not found")
	})
}

func TestBestFitAndSpread(t *testing.T) {
	for _, tt := range []struct {
		name string
		alg  Algorithm
		want string
	}{{"best fit takes the tightest node", BestFit, "mid"}, {"spread takes the emptiest node", Spread, "big"}} {
		t.Run(tt.name, func(t *testing.T) {
			s := New()
			s.SetSharedAlgorithm(tt.alg)
			mustNode(t, s, Node{ID: "small", Capacity: gib(1, 4)})
			mustNode(t, s, Node{ID: "mid", Capacity: gib(2, 8)})
			mustNode(t, s, Node{ID: "big", Capacity: gib(8, 32)})
			if p := mustPlace(t, s, Request{SandboxID: "x", Size: gib(2, 8)}); p.NodeID != tt.want {
				t.Fatalf("placed on %s, want %s", p.NodeID, tt.want)
			}
		})
	}
	t.Run("binding dimension: memory-light request on a CPU-bound node", func(t *testing.T) {
		s := New()
		mustNode(t, s, Node{ID: "n", Capacity: gib(4, 16)})
		mustPlace(t, s, Request{SandboxID: "a", Size: Resources{CPUMillis: 3000, MemoryMB: 2048}})
		// 1 vCPU and 14 GiB are free: CPU binds, and a 1 vCPU / 2 GiB
		// request (key on CPU) still finds the node.
		if p := mustPlace(t, s, Request{SandboxID: "b", Size: Resources{CPUMillis: 1000, MemoryMB: 2048}}); p.NodeID != "n" {
			t.Fatalf("placed on %s", p.NodeID)
		}
		_, err := s.Place(Request{SandboxID: "c", Size: Resources{CPUMillis: 1, MemoryMB: 1}})
		wantErr(t, err, errdefs.ResourceExhausted, "no node fits sandbox c")
		mustCheck(t, s)
	})
}

func TestErrors(t *testing.T) {
	s := New()
	mustNode(t, s, Node{ID: "n", Capacity: gib(4, 16)})
	mustPlace(t, s, Request{SandboxID: "a", Size: gib(2, 8)})
	_, err := s.Place(Request{SandboxID: "a", Size: gib(1, 1)})
	wantErr(t, err, errdefs.AlreadyExists, "sandbox a is already placed in pool shared")
	_, err = s.Place(Request{Size: gib(1, 1)})
	wantErr(t, err, errdefs.InvalidArgument, `request "": a sandbox ID and a non-negative size are required`)
	wantErr(t, s.Release(SharedPool, "zz"), errdefs.NotFound, "sandbox zz has no placement in pool shared")
	wantErr(t, s.UpsertNode(Node{ID: "n", Capacity: gib(1, 4)}), errdefs.FailedPrecondition,
		"node n: capacity {CPUMillis:1000 MemoryMB:4096 DiskMB:16384} is below its placements' {CPUMillis:2000 MemoryMB:8192 DiskMB:32768}")
	wantErr(t, s.RemoveNode("n"), errdefs.FailedPrecondition, "node n still holds 1 placements")
	wantErr(t, s.SetNodeStatus("zz", NodeDown), errdefs.NotFound, "node zz not found")
	if err := s.Release(SharedPool, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveNode("n"); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, s)
}

func TestNodeStatus(t *testing.T) {
	s := New()
	mustNode(t, s, Node{ID: "n", Capacity: gib(4, 16)})
	mustPlace(t, s, Request{SandboxID: "a", Size: gib(1, 4)})
	for _, st := range []NodeStatus{NodeDraining, NodeDown} {
		if err := s.SetNodeStatus("n", st); err != nil {
			t.Fatal(err)
		}
		_, err := s.Place(Request{SandboxID: "b", Size: gib(1, 4)})
		wantErr(t, err, errdefs.ResourceExhausted, "no node fits sandbox b")
		mustCheck(t, s)
	}
	if err := s.SetNodeStatus("n", NodeUp); err != nil {
		t.Fatal(err)
	}
	mustPlace(t, s, Request{SandboxID: "b", Size: gib(1, 4)})
	mustCheck(t, s)
}

func TestBlockedRequestsWake(t *testing.T) {
	s := New()
	mustNode(t, s, Node{ID: "cpu", Capacity: gib(2, 8)})
	mustNode(t, s, Node{ID: "gpu", Capacity: gib(2, 8), Labels: map[string]string{"gpu": "h100"}})
	mustPlace(t, s, Request{SandboxID: "c1", Size: gib(2, 8)})
	mustPlace(t, s, Request{SandboxID: "g1", Size: gib(2, 8), Constraints: NewConstraints("", map[string]string{"gpu": "h100"})})
	s.Commit()

	gpu := NewConstraints("", map[string]string{"gpu": "h100"})
	_, err := s.Place(Request{SandboxID: "wg", Size: gib(1, 4), Constraints: gpu, Wait: true})
	wantErr(t, err, errdefs.ResourceExhausted, "no node fits sandbox wg: parked until capacity frees")
	_, err = s.Place(Request{SandboxID: "wa", Size: gib(2, 8), Wait: true})
	wantErr(t, err, errdefs.ResourceExhausted, "no node fits sandbox wa: parked until capacity frees")
	_, err = s.Place(Request{SandboxID: "wx", Size: gib(1, 4), Constraints: NewConstraints("qemu", nil), Wait: true})
	wantErr(t, err, errdefs.ResourceExhausted, "no node fits sandbox wx: parked until capacity frees")

	// Freeing the CPU node wakes the unconstrained waiter, not the GPU one.
	if err := s.Release(SharedPool, "c1"); err != nil {
		t.Fatal(err)
	}
	b, _ := s.CommitPool(SharedPool)
	want := Batch{Pool: SharedPool, Released: []string{"c1"}, Placed: []Placement{{SandboxID: "wa", NodeID: "cpu", Pool: SharedPool, Size: gib(2, 8), Woken: true}}}
	if diff := cmp.Diff(want, b); diff != "" {
		t.Fatalf("batch after freeing cpu (-want +got):\n%s", diff)
	}
	// Freeing the GPU node wakes the GPU waiter.
	if err := s.Release(SharedPool, "g1"); err != nil {
		t.Fatal(err)
	}
	b, _ = s.CommitPool(SharedPool)
	if len(b.Placed) != 1 || b.Placed[0].SandboxID != "wg" || b.Placed[0].NodeID != "gpu" {
		t.Fatalf("batch after freeing gpu: %+v", b)
	}
	// A node with a new class (a runtime nobody had) wakes the escaped waiter.
	mustNode(t, s, Node{ID: "vm", Capacity: gib(2, 8), Runtimes: []string{"qemu"}})
	b, _ = s.CommitPool(SharedPool)
	if len(b.Placed) != 1 || b.Placed[0].SandboxID != "wx" || b.Placed[0].NodeID != "vm" {
		t.Fatalf("batch after adding a qemu node: %+v", b)
	}
	if n := s.routes.Load().pools[SharedPool].blocked.Len(); n != 0 {
		t.Fatalf("%d requests still parked", n)
	}
	mustCheck(t, s)
}

func TestBlockedAcrossPoolsPlacedOnce(t *testing.T) {
	s := dedicatedSetup(t, true)
	for i := range 4 {
		mustPlace(t, s, Request{SandboxID: fmt.Sprint("a", i), Tenant: "acme", Size: gib(1, 4)})
		mustPlace(t, s, Request{SandboxID: fmt.Sprint("o", i), Tenant: "other", Size: gib(1, 4)})
	}
	s.Commit()
	_, err := s.Place(Request{SandboxID: "w", Tenant: "acme", Size: gib(1, 4), Wait: true})
	wantErr(t, err, errdefs.ResourceExhausted, "no node fits sandbox w: parked until capacity frees")
	// Parked in both acme and shared: the shared release places it, the
	// later acme release must not place it again.
	if err := s.Release(SharedPool, "o0"); err != nil {
		t.Fatal(err)
	}
	if err := s.Release("acme", "a0"); err != nil {
		t.Fatal(err)
	}
	placed := 0
	for _, b := range s.Commit() {
		for _, p := range b.Placed {
			if p.SandboxID == "w" {
				placed++
				if p.Pool != SharedPool || !p.Woken {
					t.Fatalf("woken placement %+v, want in shared", p)
				}
			}
		}
	}
	if placed != 1 {
		t.Fatalf("parked request placed %d times, want 1", placed)
	}
	mustCheck(t, s)
}

func TestSnapshotIsolation(t *testing.T) {
	s := New()
	mustNode(t, s, Node{ID: "n", Capacity: gib(8, 32)})
	mustPlace(t, s, Request{SandboxID: "a", Size: gib(1, 4)})
	s.Commit()
	before := s.Snapshot()
	mustPlace(t, s, Request{SandboxID: "b", Size: gib(2, 8)})
	if err := s.Release(SharedPool, "a"); err != nil {
		t.Fatal(err)
	}
	if ni, _ := s.Snapshot().Node(SharedPool, "n"); ni.Used != gib(1, 4) || ni.Placements != 1 {
		t.Fatalf("committed snapshot shows %+v, want only a: uncommitted decisions are visible", ni)
	}
	if got := s.Working().PlacementsOn(SharedPool, "n"); len(got) != 1 || got[0].SandboxID != "b" {
		t.Fatalf("working placements %+v, want only b", got)
	}
	s.Commit()
	after := s.Snapshot()
	ni, _ := before.Node(SharedPool, "n")
	if ni.Used != gib(1, 4) || ni.Placements != 1 {
		t.Fatalf("old snapshot changed: %+v", ni)
	}
	ni, _ = after.Node(SharedPool, "n")
	if ni.Used != gib(2, 8) || ni.Placements != 1 {
		t.Fatalf("new snapshot: %+v", ni)
	}
	for _, snap := range []*Snapshot{before, after} {
		if err := snap.Check(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestConcurrentReadersAndPools runs readers on snapshots while two pools'
// loops decide in parallel; run it with -race.
func TestConcurrentReadersAndPools(t *testing.T) {
	s := dedicatedSetup(t, false)
	for i := range 20 {
		mustNode(t, s, Node{ID: fmt.Sprint("s", i+2), Capacity: gib(16, 64)})
		mustNode(t, s, Node{ID: fmt.Sprint("d", i+2), Pool: "acme", Capacity: gib(16, 64)})
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := s.Snapshot().Check(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var writers sync.WaitGroup
	for _, tenant := range []string{"acme", "other"} {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := range 2000 {
				id := fmt.Sprint(tenant, i)
				p, err := s.Place(Request{SandboxID: id, Tenant: tenant, Size: gib(1, 2)})
				if err == nil && i%2 == 0 {
					err = s.Release(p.Pool, id)
				}
				if err != nil && !errdefs.Is(err, errdefs.ResourceExhausted) {
					t.Error(err)
				}
				if i%100 == 0 {
					s.Commit()
				}
			}
		}()
	}
	writers.Wait()
	close(stop)
	wg.Wait()
	mustCheck(t, s)
}

// TestChurnNeverOverCommits places and releases at random over a mixed
// cluster with status and capacity changes, checking the invariants as it
// goes, and that a failure is never a miss of a node the index guarantees.
func TestChurnNeverOverCommits(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	s := New()
	if err := s.AddPool(Pool{Name: "t1", Tenant: "t1", OverflowToShared: true}); err != nil {
		t.Fatal(err)
	}
	shapes := []Resources{gib(1, 4), gib(2, 8), {CPUMillis: 1000, MemoryMB: 2048, DiskMB: 4096}, gib(4, 16), gib(8, 32)}
	cons := []*Constraints{nil, NewConstraints("gvisor", nil), NewConstraints("", map[string]string{"region": "b"}), NewConstraints("qemu", map[string]string{"gpu": "1"})}
	node := func(i int) Node {
		n := Node{ID: fmt.Sprint("n", i), Capacity: gib(16, 64), Runtimes: []string{"gvisor"}, Labels: map[string]string{"region": string(rune('a' + i%3))}}
		if i%7 == 0 {
			n.Runtimes = append(n.Runtimes, "qemu")
			n.Labels["gpu"] = "1"
		}
		if i%10 == 0 {
			n.Pool = "t1"
		}
		return n
	}
	for i := range 100 {
		mustNode(t, s, node(i))
	}
	live := map[string]string{} // sandbox -> pool
	var ids []string
	for op := range 20000 {
		switch r := rng.IntN(100); {
		case r < 55:
			id := fmt.Sprint("sb", op)
			tenant := "shared-tenant"
			if rng.IntN(10) == 0 {
				tenant = "t1"
			}
			req := Request{SandboxID: id, Tenant: tenant, Size: shapes[rng.IntN(len(shapes))], Constraints: cons[rng.IntN(len(cons))]}
			p, err := s.Place(req)
			if err != nil {
				if !errdefs.Is(err, errdefs.ResourceExhausted) {
					t.Fatal(err)
				}
				assertNoGuaranteedFit(t, s, req)
				continue
			}
			live[id] = p.Pool
			ids = append(ids, id)
		case r < 95 && len(ids) > 0:
			k := rng.IntN(len(ids))
			id := ids[k]
			ids[k] = ids[len(ids)-1]
			ids = ids[:len(ids)-1]
			if err := s.Release(live[id], id); err != nil {
				t.Fatal(err)
			}
			delete(live, id)
		case r < 98:
			if err := s.SetNodeStatus(fmt.Sprint("n", rng.IntN(100)), NodeStatus(rng.IntN(3))); err != nil {
				t.Fatal(err)
			}
		default:
			n := node(rng.IntN(100))
			n.Capacity = gib(int64(8+rng.IntN(16)), int64(32+rng.IntN(64)))
			if err := s.UpsertNode(n); err != nil && !errdefs.Is(err, errdefs.FailedPrecondition) {
				t.Fatal(err)
			}
		}
		if op%1000 == 0 {
			s.Commit()
			mustCheck(t, s)
		}
	}
	mustCheck(t, s)
	snap := s.Working()
	if got := snap.Placements(SharedPool) + snap.Placements("t1"); got != len(live) {
		t.Fatalf("%d placements, %d live sandboxes", got, len(live))
	}
}

// assertNoGuaranteedFit fails when an up, eligible node in a pool req may
// use has, in every dimension, at least the request's binding share free:
// the index can never miss such a node.
func assertNoGuaranteedFit(t *testing.T, s *Scheduler, req Request) {
	t.Helper()
	for _, pl := range s.routes.Load().forTenant(req.Tenant) {
		st := pl.work
		key := st.demandOf(req.Size)
		st.nodes.each(func(r *nodeRec) bool {
			if r.node.Status == NodeUp && st.classes[r.class].admits(req.Constraints) && st.slotsOf(r.free()) >= key {
				t.Fatalf("%s failed but node %s (free %+v) fits it", req.SandboxID, r.node.ID, r.free())
			}
			return true
		})
	}
}

func TestPlacementIsDeterministic(t *testing.T) {
	run := func() []Batch {
		rng := rand.New(rand.NewPCG(1, 2))
		s := New()
		for i := range 50 {
			mustNode(t, s, Node{ID: fmt.Sprint("n", i), Capacity: gib(8, 32)})
		}
		for i := range 300 {
			_, _ = s.Place(Request{SandboxID: fmt.Sprint("s", i), Size: gib(int64(1+rng.IntN(4)), 4)})
		}
		return s.Commit()
	}
	if diff := cmp.Diff(run(), run()); diff != "" {
		t.Fatalf("same input, different decisions:\n%s", diff)
	}
}

func TestRestore(t *testing.T) {
	s := New()
	if err := s.UpsertNode(Node{ID: "a", Capacity: Resources{CPUMillis: 2000, MemoryMB: 2048, DiskMB: 10000}}); err != nil {
		t.Fatal(err)
	}
	size := Resources{CPUMillis: 1000, MemoryMB: 1024, DiskMB: 100}
	for _, id := range []string{"sb-1", "sb-2"} {
		if p, err := s.Restore(Request{SandboxID: id, Size: size}, "a"); err != nil || p.NodeID != "a" {
			t.Fatalf("restore %s: %+v %v", id, p, err)
		}
	}
	if _, err := s.Restore(Request{SandboxID: "sb-3", Size: size}, "a"); !errdefs.Is(err, errdefs.ResourceExhausted) {
		t.Fatalf("restore past capacity: %v, want ResourceExhausted", err)
	}
	if _, err := s.Restore(Request{SandboxID: "sb-1", Size: Resources{}}, "a"); !errdefs.Is(err, errdefs.AlreadyExists) {
		t.Fatalf("restore twice: %v, want AlreadyExists", err)
	}
	if _, err := s.Restore(Request{SandboxID: "sb-4"}, "nope"); !errdefs.IsNotFound(err) {
		t.Fatalf("restore on an unknown node: %v", err)
	}
	if _, err := s.Place(Request{SandboxID: "sb-5", Size: size}); !errdefs.Is(err, errdefs.ResourceExhausted) {
		t.Fatalf("place on a node full of restored placements: %v", err)
	}
	if err := s.Working().Check(); err != nil {
		t.Fatal(err)
	}
}

func TestSetPoolPolicy(t *testing.T) {
	s := New()
	if err := s.AddPool(Pool{Name: "gpu", Tenant: "a"}); err != nil {
		t.Fatal(err)
	}
	size := Resources{CPUMillis: 1000, MemoryMB: 1024}
	for _, n := range []Node{{ID: "d", Pool: "gpu", Capacity: Resources{CPUMillis: 1000, MemoryMB: 1024}}, {ID: "s", Capacity: Resources{CPUMillis: 8000, MemoryMB: 8192}}} {
		if err := s.UpsertNode(n); err != nil {
			t.Fatal(err)
		}
	}
	if p, err := s.Place(Request{SandboxID: "a1", Tenant: "a", Size: size}); err != nil || p.NodeID != "d" {
		t.Fatalf("a's first sandbox: %+v %v", p, err)
	}
	if _, err := s.Place(Request{SandboxID: "a2", Tenant: "a", Size: size}); !errdefs.Is(err, errdefs.ResourceExhausted) {
		t.Fatalf("a's pool is full and it may not overflow: %v", err)
	}
	if err := s.SetPoolPolicy("gpu", "a", true); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Place(Request{SandboxID: "a2", Tenant: "a", Size: size}); err != nil || p.NodeID != "s" {
		t.Fatalf("after overflow was allowed: %+v %v", p, err)
	}
	if p, err := s.Place(Request{SandboxID: "b1", Tenant: "b", Size: size}); err != nil || p.NodeID != "s" {
		t.Fatalf("b on the shared nodes: %+v %v", p, err)
	}
	if err := s.SetPoolPolicy("gpu", "b", false); !errdefs.Is(err, errdefs.FailedPrecondition) {
		t.Fatalf("moving a pool that holds a's sandbox to b: %v", err)
	}
	if err := s.Release("gpu", "a1"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPoolPolicy("gpu", "b", false); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Place(Request{SandboxID: "b2", Tenant: "b", Size: size}); err != nil || p.NodeID != "d" {
		t.Fatalf("b on its new pool: %+v %v", p, err)
	}
	if err := s.Working().Check(); err != nil {
		t.Fatal(err)
	}
}

// TestPlaceOrPark: a request that does not fit is parked with a ticket;
// freed capacity places it (a Woken placement in the next batch, and its
// ticket can no longer be cancelled); a cancelled ticket is never placed.
func TestPlaceOrPark(t *testing.T) {
	s := New()
	mustNode(t, s, Node{ID: "n1", Capacity: gib(2, 4)})
	p, tk, err := s.PlaceOrPark(Request{SandboxID: "a", Size: gib(2, 4)})
	if err != nil || tk != nil || p.NodeID != "n1" {
		t.Fatalf("first request: %+v, ticket %v, %v; want placed on n1", p, tk, err)
	}
	s.Commit()
	_, waiting, err := s.PlaceOrPark(Request{SandboxID: "b", Size: gib(2, 4)})
	if err != nil || waiting == nil {
		t.Fatalf("a request that does not fit: ticket %v, %v; want parked", waiting, err)
	}
	_, gone, err := s.PlaceOrPark(Request{SandboxID: "c", Size: gib(2, 4)})
	if err != nil || gone == nil {
		t.Fatalf("a third request: ticket %v, %v; want parked", gone, err)
	}
	if n := s.Parked(SharedPool); n != 2 {
		t.Fatalf("Parked = %d, want 2", n)
	}
	if !gone.Cancel() {
		t.Fatal("cancelling a parked request that was not placed failed")
	}
	if err := s.Release(SharedPool, "a"); err != nil {
		t.Fatal(err)
	}
	var woken []Placement
	for _, b := range s.Commit() {
		for _, p := range b.Placed {
			if p.Woken {
				woken = append(woken, p)
			}
		}
	}
	if len(woken) != 1 || woken[0].SandboxID != "b" || woken[0].NodeID != "n1" {
		t.Fatalf("woken placements %+v, want b on n1", woken)
	}
	if waiting.Cancel() {
		t.Fatal("cancelled a request after it was placed")
	}
	mustCheck(t, s)
	// The cancelled one stays out when room frees again.
	if err := s.Release(SharedPool, "b"); err != nil {
		t.Fatal(err)
	}
	for _, b := range s.Commit() {
		if len(b.Placed) != 0 {
			t.Fatalf("a cancelled request was placed: %+v", b.Placed)
		}
	}
	if _, _, err := s.PlaceOrPark(Request{SandboxID: "", Size: gib(1, 1)}); !errdefs.Is(err, errdefs.InvalidArgument) {
		t.Fatalf("a request with no ID: %v, want InvalidArgument", err)
	}
}

// TestCheckFindsViolations breaks a working state in each way Check looks
// for and requires it to say so: a checker that cannot fail proves nothing.
func TestCheckFindsViolations(t *testing.T) {
	setup := func(t *testing.T) (*Working, *poolState, *poolState) {
		s := dedicatedSetup(t, true)
		mustPlace(t, s, Request{SandboxID: "a", Tenant: "acme", Size: gib(1, 4)})
		mustPlace(t, s, Request{SandboxID: "b", Tenant: "other", Size: gib(1, 4)})
		w := s.Working()
		if err := w.Check(); err != nil {
			t.Fatalf("untouched state: %v", err)
		}
		return w, w.pools["acme"], w.pools[SharedPool]
	}
	cases := []struct {
		name    string
		corrupt func(w *Working, acme, shared *poolState)
		want    string
	}{
		{"usage differs from placements", func(w *Working, acme, _ *poolState) {
			r := acme.mustNode(0)
			r.used = r.used.Add(gib(1, 0))
		}, "node d1 records"},
		{"over-commit", func(w *Working, acme, _ *poolState) {
			pr := w.placed["acme"]["a"]
			pr.size = gib(8, 32)
			w.placed["acme"]["a"] = pr
			r := acme.mustNode(0)
			r.used = gib(8, 32)
			acme.used = gib(8, 32)
		}, "over-committed"},
		{"another tenant on a dedicated node", func(w *Working, _, _ *poolState) {
			pr := w.placed["acme"]["a"]
			pr.tenant = "other"
			w.placed["acme"]["a"] = pr
		}, `sandbox a of tenant "other" on node d1, dedicated to tenant "acme"`},
		{"a sandbox in two pools", func(w *Working, _, _ *poolState) {
			w.placed[SharedPool]["a"] = w.placed["acme"]["a"]
		}, "sandbox a placed in pools acme and shared"},
		{"a placement on no node", func(w *Working, _, _ *poolState) {
			pr := w.placed["acme"]["a"]
			pr.nodeSeq = 99
			w.placed["acme"]["a"] = pr
		}, "sandbox a is on node 99, which the pool does not hold"},
		{"an up node missing from its index", func(w *Working, _, shared *poolState) {
			r := shared.mustNode(0)
			shared.index[r.class].Delete(shared.owner, shared.keyOf(r))
		}, "node s1 is up but not in its class index"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, acme, shared := setup(t)
			c.corrupt(w, acme, shared)
			err := w.Check()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Check() = %v, want an error containing %q", err, c.want)
			}
		})
	}
}
