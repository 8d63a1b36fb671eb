// Package scheduler is den's placement engine: it decides which node runs
// each sandbox.
//
// The state is a set of pools (the shared pool and dedicated pools owned by
// a tenant), each a copy-on-write value holding the pool's nodes with the
// sums of their placements and, per computed node class, an ordered index
// of the up nodes keyed on the free share of the binding resource. Which
// sandbox is on which node is the placement loop's own index (and the
// store's): snapshots do not copy it. Each pool has its own
// placement loop (a lock around a working copy of its state); decisions are
// applied to the working copy at once, so the next decision sees them, and
// are collected into a Batch that the commit path takes with Commit, which
// also publishes the working copy to readers. A reader's Snapshot is a copy
// of one pointer per pool.
//
// Nothing here is durable or networked. The replicated store is to write
// each Batch as one log entry and apply it on followers, and nodes are told
// of their placements by the control plane; neither is wired yet.
package scheduler

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/denhq/den/internal/errdefs"
)

// Batch is what a pool decided since its last Commit, in order: the unit
// the commit path writes as one replicated log entry.
type Batch struct {
	Pool     string      `json:"pool"`
	Placed   []Placement `json:"placed,omitempty"`
	Released []string    `json:"released,omitempty"`
}

// Len is the number of decisions in b.
func (b Batch) Len() int { return len(b.Placed) + len(b.Released) }

// Scheduler places sandboxes on nodes. All methods are safe for concurrent
// use; decisions in one pool are serial, pools are independent.
type Scheduler struct {
	mu       sync.Mutex        // serialises changes to the pool set and nodePool
	nodePool map[string]string // node ID -> pool; guarded by mu
	routes   atomic.Pointer[routes]
}

// routes is the immutable pool directory the decision path reads without
// a lock; a new pool replaces it.
type routes struct {
	pools  map[string]*poolLoop
	tenant map[string][]*poolLoop // a tenant's pools in the order tried
	shared []*poolLoop
}

func (rt *routes) forTenant(tenant string) []*poolLoop {
	if p, ok := rt.tenant[tenant]; ok {
		return p
	}
	return rt.shared
}

// New returns a scheduler holding only the empty shared pool, best-fit.
func New() *Scheduler {
	s := &Scheduler{nodePool: map[string]string{}}
	shared := newPoolLoop(Pool{Name: SharedPool})
	s.routes.Store(&routes{
		pools:  map[string]*poolLoop{SharedPool: shared},
		tenant: map[string][]*poolLoop{},
		shared: []*poolLoop{shared},
	})
	return s
}

// SetSharedAlgorithm sets the shared pool's algorithm.
func (s *Scheduler) SetSharedAlgorithm(a Algorithm) {
	pl := s.routes.Load().shared[0]
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pl.work.spec.Algorithm = a
}

// AddPool adds a dedicated pool owned by p.Tenant.
func (s *Scheduler) AddPool(p Pool) error {
	if p.Name == "" || p.Name == SharedPool || p.Tenant == "" {
		return errdefs.New(errdefs.InvalidArgument, "pool %q: a dedicated pool needs a name other than %q and a tenant", p.Name, SharedPool)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.routes.Load()
	if _, ok := old.pools[p.Name]; ok {
		return errdefs.New(errdefs.AlreadyExists, "pool %s already exists", p.Name)
	}
	pools := maps.Clone(old.pools)
	pools[p.Name] = newPoolLoop(p)
	s.routes.Store(buildRoutes(pools, old.shared))
	return nil
}

// SetPoolPolicy changes a dedicated pool's owner and overflow policy (a
// tenant's placement changed). A pool that holds placements keeps its
// owner: FailedPrecondition.
func (s *Scheduler) SetPoolPolicy(name, tenant string, overflow bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.routes.Load()
	pl, ok := old.pools[name]
	if !ok || name == SharedPool {
		return errdefs.New(errdefs.NotFound, "dedicated pool %s not found", name)
	}
	pl.mu.Lock()
	spec := pl.work.spec
	if spec.Tenant != tenant && len(pl.bySandbox) > 0 {
		pl.mu.Unlock()
		return errdefs.New(errdefs.FailedPrecondition, "pool %s holds sandboxes of tenant %s: it cannot move to tenant %s until they are gone", name, spec.Tenant, tenant)
	}
	pl.work.spec.Tenant, pl.work.spec.OverflowToShared = tenant, overflow
	pl.mu.Unlock()
	s.routes.Store(buildRoutes(maps.Clone(old.pools), old.shared))
	return nil
}

// buildRoutes is the pool directory of pools: each tenant's dedicated
// pools in name order, then the shared pool where one of them overflows.
func buildRoutes(pools map[string]*poolLoop, shared []*poolLoop) *routes {
	rt := &routes{pools: pools, tenant: map[string][]*poolLoop{}, shared: shared}
	overflow := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(rt.pools)) {
		pl := rt.pools[name]
		pl.mu.Lock()
		spec := pl.work.spec // the working spec: SetPoolPolicy may not be committed yet
		pl.mu.Unlock()
		if spec.Tenant != "" {
			rt.tenant[spec.Tenant] = append(rt.tenant[spec.Tenant], pl)
			overflow[spec.Tenant] = overflow[spec.Tenant] || spec.OverflowToShared
		}
	}
	for t, pls := range rt.tenant {
		if overflow[t] {
			rt.tenant[t] = append(pls, shared[0])
		}
	}
	return rt
}

func (s *Scheduler) pool(name string) (*poolLoop, error) {
	if name == "" {
		name = SharedPool
	}
	pl, ok := s.routes.Load().pools[name]
	if !ok {
		return nil, errdefs.New(errdefs.NotFound, "pool %s not found", name)
	}
	return pl, nil
}

// UpsertNode adds a node or updates its capacity, labels, runtimes and
// status; its placements stay. A node cannot move between pools while it
// holds placements, nor shrink below them. Capacity that a change frees
// wakes parked requests.
func (s *Scheduler) UpsertNode(n Node) error {
	if n.ID == "" || n.Capacity.negative() {
		return errdefs.New(errdefs.InvalidArgument, "node %q: an ID and non-negative capacity are required", n.ID)
	}
	if n.Pool == "" {
		n.Pool = SharedPool
	}
	n.Labels = maps.Clone(n.Labels)
	n.Runtimes = slices.Clone(n.Runtimes)
	s.mu.Lock()
	defer s.mu.Unlock()
	pl, err := s.pool(n.Pool)
	if err != nil {
		return err
	}
	if prev, ok := s.nodePool[n.ID]; ok && prev != n.Pool {
		old, _ := s.pool(prev)
		if err := old.removeNode(n.ID); err != nil {
			return err
		}
	}
	if err := pl.upsertNode(n); err != nil {
		return err
	}
	s.nodePool[n.ID] = n.Pool
	return nil
}

// SetNodeStatus marks a node up, draining or down. Only up nodes take new
// placements; the placements of a down node stay counted until released.
func (s *Scheduler) SetNodeStatus(id string, st NodeStatus) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, ok := s.nodePool[id]
	if !ok {
		return errdefs.New(errdefs.NotFound, "node %s not found", id)
	}
	pl, _ := s.pool(name)
	return pl.setStatus(id, st)
}

// RemoveNode removes a node that holds no placements.
func (s *Scheduler) RemoveNode(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, ok := s.nodePool[id]
	if !ok {
		return errdefs.New(errdefs.NotFound, "node %s not found", id)
	}
	pl, _ := s.pool(name)
	if err := pl.removeNode(id); err != nil {
		return err
	}
	delete(s.nodePool, id)
	return nil
}

// Place decides where req runs: the first of the tenant's pools that fits
// (its dedicated pools, then the shared pool if its policy allows; a tenant
// without dedicated pools uses the shared pool only). The placement is
// applied to the working state and added to its pool's batch. When nothing
// fits it returns a ResourceExhausted error; with req.Wait the request is
// parked, and its placement later arrives in a batch with Woken set.
func (s *Scheduler) Place(req Request) (Placement, error) {
	var w *waiter
	if req.Wait {
		w = &waiter{req: req}
	}
	return s.place(req, w)
}

// Ticket is a request PlaceOrPark parked.
type Ticket struct{ w *waiter }

// Cancel withdraws the parked request. It reports false when the request
// was placed first: its placement is, or soon will be, in a batch with
// Woken set, and belongs to the caller.
func (t *Ticket) Cancel() bool { return t.w.claim() }

// PlaceOrPark is Place that parks req when nothing fits and returns its
// ticket (and no error): the placement arrives in a later batch with
// Woken set, when capacity that fits it frees, unless Cancel withdraws it
// first. A request placed at once has no ticket.
func (s *Scheduler) PlaceOrPark(req Request) (Placement, *Ticket, error) {
	w := &waiter{req: req}
	p, err := s.place(req, w)
	if err == nil {
		return p, nil, nil
	}
	if errdefs.Is(err, errdefs.ResourceExhausted) {
		return Placement{}, &Ticket{w: w}, nil
	}
	return Placement{}, nil, err
}

func (s *Scheduler) place(req Request, w *waiter) (Placement, error) {
	if req.SandboxID == "" || req.Size.negative() {
		return Placement{}, errdefs.New(errdefs.InvalidArgument, "request %q: a sandbox ID and a non-negative size are required", req.SandboxID)
	}
	pools := s.routes.Load().forTenant(req.Tenant)
	for _, pl := range pools {
		p, ok, err := pl.place(req, w)
		if err != nil || ok {
			return p, err
		}
	}
	if w != nil {
		return Placement{}, errdefs.New(errdefs.ResourceExhausted, "no node fits sandbox %s: parked until capacity frees", req.SandboxID)
	}
	return Placement{}, errdefs.New(errdefs.ResourceExhausted, "no node fits sandbox %s", req.SandboxID)
}

// Release removes the placement of a sandbox in a pool, freeing its
// resources for the next decision and waking parked requests it fits.
func (s *Scheduler) Release(pool, sandboxID string) error {
	pl, err := s.pool(pool)
	if err != nil {
		return err
	}
	return pl.release(sandboxID)
}

// Commit takes every pool's pending batch (pools with none are left out),
// in pool name order, and publishes the working states to readers.
func (s *Scheduler) Commit() []Batch {
	rt := s.routes.Load()
	var out []Batch
	for _, name := range slices.Sorted(maps.Keys(rt.pools)) {
		if b := rt.pools[name].commit(); b.Len() > 0 {
			out = append(out, b)
		}
	}
	return out
}

// CommitPool is Commit for one pool: the batch its loop decided.
func (s *Scheduler) CommitPool(pool string) (Batch, error) {
	pl, err := s.pool(pool)
	if err != nil {
		return Batch{}, err
	}
	return pl.commit(), nil
}

// Snapshot returns the committed state of every pool: one pointer copy per
// pool, never blocked by decisions. Pools are independent, so the snapshot
// is consistent per pool.
func (s *Scheduler) Snapshot() *Snapshot {
	rt := s.routes.Load()
	snap := &Snapshot{pools: make(map[string]*poolState, len(rt.pools))}
	for name, pl := range rt.pools {
		snap.pools[name] = pl.snap.Load()
	}
	return snap
}

// Working returns the pools' working states, including decisions not yet
// committed, with their placements. It briefly locks each pool and copies
// its placements; tests and benchmarks use it to check invariants on
// exactly what was decided.
func (s *Scheduler) Working() *Working {
	rt := s.routes.Load()
	w := &Working{Snapshot: &Snapshot{pools: make(map[string]*poolState, len(rt.pools))}, placed: map[string]map[string]placementRec{}}
	for name, pl := range rt.pools {
		pl.mu.Lock()
		w.pools[name] = pl.work
		w.placed[name] = pl.placements()
		pl.work = pl.work.clone()
		pl.mu.Unlock()
	}
	return w
}

// Restore puts back a placement that already exists (a sandbox recorded
// on a node, when a server rebuilds its scheduler from the store, or a
// clone that must run where its snapshot is): req bound to node nodeID of
// its pool, with no choice made. It refuses what the node cannot hold
// (ResourceExhausted), so a restore never over-commits either; the caller
// reports such a sandbox.
func (s *Scheduler) Restore(req Request, nodeID string) (Placement, error) {
	if req.SandboxID == "" || req.Size.negative() {
		return Placement{}, errdefs.New(errdefs.InvalidArgument, "request %q: a sandbox ID and a non-negative size are required", req.SandboxID)
	}
	s.mu.Lock()
	pool, ok := s.nodePool[nodeID]
	s.mu.Unlock()
	if !ok {
		return Placement{}, errdefs.New(errdefs.NotFound, "node %s not found", nodeID)
	}
	pl, err := s.pool(pool)
	if err != nil {
		return Placement{}, err
	}
	return pl.restore(req, nodeID)
}

// Parked is the number of requests of a pool waiting for capacity.
func (s *Scheduler) Parked(pool string) int {
	pl, err := s.pool(pool)
	if err != nil {
		return 0
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.blocked.Len()
}
