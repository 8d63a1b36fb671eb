package scheduler

import (
	"sync"
	"sync/atomic"

	"github.com/denhq/den/internal/errdefs"
)

// poolLoop is one pool's placement loop: its working state, the batch
// decided since the last commit, its feasibility cache and its parked
// requests. Methods lock mu for their whole decision, so the decisions of
// one pool are serial.
type poolLoop struct {
	mu      sync.Mutex
	work    *poolState // the committed state plus pending decisions
	pending Batch
	// elig caches, per constraints key, the classes that admit it; it is
	// rebuilt when the pool gains a class.
	elig        map[string][]int32
	eligByPtr   map[*Constraints][]int32 // the same, by pointer: cheaper to hash
	eligClasses int
	blocked     blockedSet
	// bySandbox finds a placement of the working state by sandbox ID. It is
	// the writer's index, not part of snapshots (readers find placements
	// through their nodes; the store knows where each sandbox is).
	bySandbox map[string]placedRef
	kinds     []placeKind          // by placedRef.kind
	kindOf    map[placeKind]uint32 // the index of each kind in kinds

	snap atomic.Pointer[poolState] // the last committed state, for readers
}

// maxEligByPtr bounds the pointer-keyed feasibility cache.
const maxEligByPtr = 4096

func newPoolLoop(p Pool) *poolLoop {
	pl := &poolLoop{elig: map[string][]int32{}, eligByPtr: map[*Constraints][]int32{}, bySandbox: map[string]placedRef{}, kindOf: map[placeKind]uint32{}}
	st := newPoolState(p)
	pl.snap.Store(st)
	pl.work = st.clone()
	pl.pending.Pool = p.Name
	return pl
}

// spec is the pool's definition; it never changes but for the algorithm.
func (pl *poolLoop) spec() Pool { return pl.snap.Load().spec }

// eligible returns the classes of the pool that admit k.
// Preconditions: pl.mu is held.
func (pl *poolLoop) eligible(k *Constraints) []int32 {
	if len(pl.eligByPtr) > maxEligByPtr {
		clear(pl.eligByPtr) // callers that build Constraints per request
	}
	if pl.eligClasses != len(pl.work.classes) {
		clear(pl.elig)
		clear(pl.eligByPtr)
		pl.eligClasses = len(pl.work.classes)
	}
	if e, ok := pl.eligByPtr[k]; ok {
		return e
	}
	key := ""
	if k != nil {
		key = k.key
	}
	if e, ok := pl.elig[key]; ok {
		pl.eligByPtr[k] = e
		return e
	}
	e := []int32{}
	for i, c := range pl.work.classes {
		if c.admits(k) {
			e = append(e, int32(i))
		}
	}
	pl.elig[key] = e
	pl.eligByPtr[k] = e
	return e
}

// place tries to place req in this pool. When nothing fits and w is not
// nil, w is parked here. ok is false when the pool has no room.
func (pl *poolLoop) place(req Request, w *waiter) (p Placement, ok bool, err error) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	spec := pl.work.spec
	if spec.Tenant != "" && spec.Tenant != req.Tenant {
		return Placement{}, false, errdefs.New(errdefs.Internal, "request of tenant %q routed to pool %s of tenant %q", req.Tenant, spec.Name, spec.Tenant)
	}
	elig := pl.eligible(req.Constraints)
	rec := pl.work.choose(req.Size, elig)
	if rec == nil {
		// bind refuses a duplicate where it fits; one that does not fit
		// must not be parked either.
		if _, dup := pl.bySandbox[req.SandboxID]; dup {
			return Placement{}, false, errdefs.New(errdefs.AlreadyExists, "sandbox %s is already placed in pool %s", req.SandboxID, spec.Name)
		}
		if w != nil {
			pl.blocked.park(w, elig)
		}
		return Placement{}, false, nil
	}
	if w != nil && !w.claim() {
		// Another pool placed the parked request while this one was tried.
		return Placement{}, true, nil
	}
	p, _, err = pl.bind(rec, req, false)
	return p, err == nil, err
}

// bind applies a placement of req on rec and adds it to the batch.
// Preconditions: pl.mu is held; rec fits req.
func (pl *poolLoop) bind(rec *nodeRec, req Request, woken bool) (Placement, *nodeRec, error) {
	if _, dup := pl.bySandbox[req.SandboxID]; dup {
		return Placement{}, nil, errdefs.New(errdefs.AlreadyExists, "sandbox %s is already placed in pool %s", req.SandboxID, pl.work.spec.Name)
	}
	next := pl.work.bind(rec, req.Size)
	pl.bySandbox[req.SandboxID] = placedRef{nodeSeq: rec.seq, kind: pl.kind(req.Tenant, req.Size)}
	p := Placement{SandboxID: req.SandboxID, NodeID: rec.node.ID, Pool: pl.work.spec.Name, Tenant: req.Tenant, Size: req.Size, Woken: woken}
	pl.pending.Placed = append(pl.pending.Placed, p)
	return p, next, nil
}

// kind interns (tenant, size). Preconditions: pl.mu is held.
func (pl *poolLoop) kind(tenant string, size Resources) uint32 {
	k := placeKind{tenant: tenant, size: size}
	if i, ok := pl.kindOf[k]; ok {
		return i
	}
	i := uint32(len(pl.kinds))
	pl.kinds = append(pl.kinds, k)
	pl.kindOf[k] = i
	return i
}

// resolve is the placement ref stands for. Preconditions: pl.mu is held.
func (pl *poolLoop) resolve(ref placedRef) placementRec {
	k := pl.kinds[ref.kind]
	return placementRec{nodeSeq: ref.nodeSeq, tenant: k.tenant, size: k.size}
}

// placements resolves the writer index (Scheduler.Working).
// Preconditions: pl.mu is held.
func (pl *poolLoop) placements() map[string]placementRec {
	out := make(map[string]placementRec, len(pl.bySandbox))
	for id, ref := range pl.bySandbox {
		out[id] = pl.resolve(ref)
	}
	return out
}

func (pl *poolLoop) release(sandboxID string) error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	ref, ok := pl.bySandbox[sandboxID]
	if !ok {
		return errdefs.New(errdefs.NotFound, "sandbox %s has no placement in pool %s", sandboxID, pl.work.spec.Name)
	}
	rec, err := pl.work.release(sandboxID, pl.resolve(ref))
	if err != nil {
		return err
	}
	delete(pl.bySandbox, sandboxID)
	pl.pending.Released = append(pl.pending.Released, sandboxID)
	pl.wake(rec)
	return nil
}

// wake places parked requests that fit rec, whose capacity just grew.
// Preconditions: pl.mu is held.
func (pl *poolLoop) wake(rec *nodeRec) {
	if pl.blocked.n == 0 || !rec.up {
		return
	}
	class := pl.work.classes[rec.class]
	pl.blocked.wake(rec.class, class, func(w *waiter) bool {
		if !class.admits(w.req.Constraints) || !rec.free().Fits(w.req.Size) {
			return false
		}
		if !w.claim() {
			return true // placed elsewhere: drop it
		}
		if _, next, err := pl.bind(rec, w.req, true); err == nil {
			rec = next
		}
		return true // a duplicate sandbox ID is dropped: it is placed already
	})
}

func (pl *poolLoop) upsertNode(n Node) error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	rec, added, err := pl.work.upsertNode(n)
	if err != nil {
		return err
	}
	if added {
		pl.blocked.classAdded(rec.class, pl.work.classes[rec.class])
	}
	pl.wake(rec)
	return nil
}

func (pl *poolLoop) setStatus(id string, st NodeStatus) error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	old, ok := pl.work.node(id)
	if !ok {
		return errdefs.New(errdefs.NotFound, "node %s not found", id)
	}
	n := *old.node
	n.Status = st
	rec, _, err := pl.work.upsertNode(n)
	if err != nil {
		return err
	}
	pl.wake(rec)
	return nil
}

func (pl *poolLoop) removeNode(id string) error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.work.removeNode(id)
}

// commit hands out the pending batch and publishes the working state.
func (pl *poolLoop) commit() Batch {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	b := pl.pending
	// The next batch is likely about the size of this one: allocate it
	// once, with room to spare so a slightly larger one does not double it.
	pl.pending = Batch{Pool: b.Pool}
	if n := len(b.Placed); n > 0 {
		pl.pending.Placed = make([]Placement, 0, n+n/4)
	}
	if n := len(b.Released); n > 0 {
		pl.pending.Released = make([]string, 0, n+n/4)
	}
	st := pl.work
	pl.work = st.clone()
	pl.snap.Store(st)
	return b
}

// restore binds req to node id without choosing (Scheduler.Restore).
func (pl *poolLoop) restore(req Request, id string) (Placement, error) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	spec := pl.work.spec
	if spec.Tenant != "" && spec.Tenant != req.Tenant {
		return Placement{}, errdefs.New(errdefs.PermissionDenied, "sandbox %s of tenant %q cannot be on node %s of tenant %q's pool %s", req.SandboxID, req.Tenant, id, spec.Tenant, spec.Name)
	}
	rec, ok := pl.work.node(id)
	if !ok {
		return Placement{}, errdefs.New(errdefs.NotFound, "node %s not found in pool %s", id, spec.Name)
	}
	if !rec.free().Fits(req.Size) {
		return Placement{}, errdefs.New(errdefs.ResourceExhausted, "node %s cannot hold sandbox %s as well", id, req.SandboxID)
	}
	p, _, err := pl.bind(rec, req, false)
	return p, err
}
