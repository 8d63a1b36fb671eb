package scheduler

import (
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/google/btree"

	"github.com/denhq/den/internal/errdefs"
)

// btreeDegree is the degree of every tree: wide nodes keep the trees shallow
// (10k nodes are three levels) and a copy-on-write path copy cheap.
const btreeDegree = 32

// belowScan bounds how many nodes under a request's slot key are checked
// exactly when no node at or above it is free (see poolState.choose).
const belowScan = 16

// nodeClass is a computed class: the constraint-relevant attributes of a
// node within its pool. Nodes of one class are interchangeable for
// feasibility, so a request checks a class once.
type nodeClass struct {
	key      string
	runtimes []string
	labels   map[string]string
}

// admits reports whether nodes of class c satisfy k (nil: anything).
func (c *nodeClass) admits(k *Constraints) bool {
	if k == nil {
		return true
	}
	if k.runtime != "" && !slices.Contains(c.runtimes, k.runtime) {
		return false
	}
	for key, v := range k.labels {
		if got, ok := c.labels[key]; !ok || got != v {
			return false
		}
	}
	return true
}

// nodeRec is one node's record. A record the current writer made (owner is
// its token) is changed in place; any other is shared with a snapshot and a
// change replaces it (copy on write), so snapshots holding it stay valid.
type nodeRec struct {
	node *Node // a private copy, never mutated
	// capacity and up copy node's, inline: a decision reads them without
	// loading the Node.
	capacity Resources
	up       bool
	seq      uint32
	class    int32
	owner    uint64
	used     Resources
	count    int32 // live placements
}

func (r *nodeRec) free() Resources { return r.capacity.Sub(r.used) }

// slotKey orders the nodes of one class index by free binding resource,
// then by insertion sequence, which makes every choice deterministic. It
// holds no pointer (the record is found by seq in the node table), so the
// trees' nodes are not scanned by the garbage collector and moving keys
// inside them needs no write barriers.
type slotKey struct {
	slots uint64
	seq   uint32
}

func slotLess(a, b slotKey) bool {
	if a.slots != b.slots {
		return a.slots < b.slots
	}
	return a.seq < b.seq
}

// placementRec is one live placement: its node, tenant and size.
type placementRec struct {
	nodeSeq uint32
	tenant  string
	size    Resources
}

// placedRef is how the pool loop's writer index (poolLoop.bySandbox) holds
// a placement under its sandbox ID: the node and an index into the loop's
// table of (tenant, size) kinds. Eight bytes and no pointer, so the index,
// which holds every live sandbox, is small for the caches and has nothing
// in its values for the collector to follow.
type placedRef struct {
	nodeSeq uint32
	kind    uint32
}

// placeKind is a (tenant, size) a pool has placed; kinds are interned
// per pool loop and never removed (there are about as many as tenants
// times sandbox shapes).
type placeKind struct {
	tenant string
	size   Resources
}

// nodeID maps a node's ID to its sequence number, the key of the node tree.
type nodeID struct {
	id  string
	seq uint32
}

// poolState is the copy-on-write state of one pool. A committed poolState
// is immutable and shared with readers; the writer works on clone(), which
// copies only the tree roots: later writes copy the paths they touch.
type poolState struct {
	spec Pool
	// ref is the reference capacity the slot keys are fractions of: the
	// first node's capacity. A slot key is the node's free share of the
	// dimension that binds, so one ordered index serves CPU, memory and
	// disk at once.
	ref        Resources
	owner      uint64 // this state's writer token; see owners
	nodes      nodeTable
	nodeCount  int
	nodeIDs    *btree.BTreeG[nodeID] // by ID; changes only with the node set
	placements int                   // live placements in the pool
	classes    []*nodeClass          // append-only; copied on append
	index      []slotIndex           // per class: up nodes by slot key
	nextSeq    uint32
	capacity   Resources // sum over nodes
	used       Resources // sum over placements
}

func newPoolState(spec Pool) *poolState {
	return &poolState{
		spec:    spec,
		owner:   owners.Add(1),
		nodeIDs: btree.NewG(btreeDegree, func(a, b nodeID) bool { return a.id < b.id }),
	}
}

// clone returns a writable copy of p in O(classes): the node table and
// the placement map are copied lazily through the new owner token.
// Preconditions: no other goroutine clones or writes p.
func (p *poolState) clone() *poolState {
	c := *p
	c.owner = owners.Add(1)
	c.nodeIDs = p.nodeIDs.Clone()
	c.index = slices.Clone(p.index) // shares chunks until the new owner writes
	return &c
}

// fraction is v as a fraction of ref in units of 2^-32, rounded down (up
// when ceil is set). Dimensions the reference lacks count as unbounded.
func fraction(v, ref int64, ceil bool) uint64 {
	if ref <= 0 {
		if v > 0 && ceil {
			return math.MaxUint64
		}
		return math.MaxUint64 >> 1
	}
	if v <= 0 {
		return 0
	}
	v = min(v, 1<<31-1)
	q := uint64(v) << 32 / uint64(ref)
	if ceil && uint64(v)<<32%uint64(ref) != 0 {
		q++
	}
	return q
}

// slotsOf is the free share of the binding dimension: the minimum over
// dimensions of free/ref. Any node with slotsOf(free) >= demandOf(need)
// fits need in every dimension.
func (p *poolState) slotsOf(free Resources) uint64 {
	return min(fraction(free.CPUMillis, p.ref.CPUMillis, false),
		fraction(free.MemoryMB, p.ref.MemoryMB, false),
		fraction(free.DiskMB, p.ref.DiskMB, false))
}

// demandOf is a request's key: the maximum over dimensions of need/ref.
func (p *poolState) demandOf(need Resources) uint64 {
	return max(fraction(need.CPUMillis, p.ref.CPUMillis, true),
		fraction(need.MemoryMB, p.ref.MemoryMB, true),
		fraction(need.DiskMB, p.ref.DiskMB, true))
}

func (p *poolState) keyOf(r *nodeRec) slotKey {
	return slotKey{slots: p.slotsOf(r.free()), seq: r.seq}
}

// classFor returns the index of n's class, appending a class if new.
func (p *poolState) classFor(n *Node) (id int32, added bool) {
	rts := slices.Clone(n.Runtimes)
	slices.Sort(rts)
	key := strings.Join(rts, ",") + "\x00" + labelKey(n.Labels)
	for i, c := range p.classes {
		if c.key == key {
			return int32(i), false
		}
	}
	p.classes = append(slices.Clip(p.classes), &nodeClass{key: key, runtimes: rts, labels: maps.Clone(n.Labels)})
	p.index = append(slices.Clip(p.index), slotIndex{})
	return int32(len(p.classes) - 1), true
}

func (p *poolState) node(id string) (*nodeRec, bool) {
	e, ok := p.nodeIDs.Get(nodeID{id: id})
	if !ok {
		return nil, false
	}
	return p.nodeBySeq(e.seq)
}

func (p *poolState) nodeBySeq(seq uint32) (*nodeRec, bool) {
	return p.nodes.get(seq)
}

// mustNode is the record of an indexed node: an index holds only nodes of
// the table.
func (p *poolState) mustNode(seq uint32) *nodeRec {
	r, _ := p.nodes.get(seq)
	return r
}

// putNode replaces old (nil: none) by rec in the node tree and the indexes.
func (p *poolState) putNode(old, rec *nodeRec) {
	if old != nil && old.up {
		p.index[old.class].Delete(p.owner, p.keyOf(old))
	}
	p.nodes.set(p.owner, rec.seq, rec)
	if rec.up {
		p.index[rec.class].Insert(p.owner, p.keyOf(rec))
	}
}

// upsertNode adds n or replaces its attributes, keeping its placements.
// It returns the new record and whether n's class is new to the pool.
func (p *poolState) upsertNode(n Node) (*nodeRec, bool, error) {
	old, exists := p.node(n.ID)
	rec := &nodeRec{node: &n, capacity: n.Capacity, up: n.Status == NodeUp, owner: p.owner}
	if exists {
		if !n.Capacity.Sub(old.used).Fits(Resources{}) {
			return nil, false, errdefs.New(errdefs.FailedPrecondition,
				"node %s: capacity %+v is below its placements' %+v", n.ID, n.Capacity, old.used)
		}
		rec.seq, rec.used, rec.count = old.seq, old.used, old.count
		p.capacity = p.capacity.Sub(old.node.Capacity)
	} else {
		old = nil
		rec.seq = p.nextSeq
		p.nextSeq++
		p.nodeIDs.ReplaceOrInsert(nodeID{id: n.ID, seq: rec.seq})
		p.nodeCount++
	}
	if p.ref == (Resources{}) {
		p.ref = n.Capacity
	}
	var added bool
	rec.class, added = p.classFor(&n)
	p.capacity = p.capacity.Add(n.Capacity)
	p.putNode(old, rec)
	return rec, added, nil
}

// removeNode removes an empty node.
func (p *poolState) removeNode(id string) error {
	old, ok := p.node(id)
	if !ok {
		return errdefs.New(errdefs.NotFound, "node %s not found", id)
	}
	if old.count > 0 {
		return errdefs.New(errdefs.FailedPrecondition, "node %s still holds %d placements", id, old.count)
	}
	if old.up {
		p.index[old.class].Delete(p.owner, p.keyOf(old))
	}
	p.nodes.set(p.owner, old.seq, nil)
	p.nodeIDs.Delete(nodeID{id: id})
	p.nodeCount--
	p.capacity = p.capacity.Sub(old.node.Capacity)
	return nil
}

// choose returns the node the pool's algorithm picks for need among the
// classes elig, or nil when none fits. It reads only.
func (p *poolState) choose(need Resources, elig []int32) *nodeRec {
	key := p.demandOf(need)
	var best *nodeRec
	var bestSlots uint64
	for _, c := range elig {
		var hit slotKey
		var found bool
		if p.spec.Algorithm == Spread {
			hit, found = p.index[c].Max()
			found = found && hit.slots >= key
		} else {
			hit, found = p.index[c].Ceil(slotKey{slots: key})
		}
		if !found {
			continue
		}
		rec := p.mustNode(hit.seq)
		if !rec.free().Fits(need) {
			continue
		}
		better := hit.slots < bestSlots
		if p.spec.Algorithm == Spread {
			better = hit.slots > bestSlots
		}
		if best == nil || better {
			best, bestSlots = rec, hit.slots
		}
	}
	if best == nil && key > 0 {
		best = p.chooseBelow(need, key, elig)
	}
	return best
}

// chooseBelow is the exact check of a few nodes just under the key: a node
// whose binding dimension is short of the request's key may still fit it
// when the request is light in that dimension (1 vCPU / 2 GiB on 1:4 nodes).
func (p *poolState) chooseBelow(need Resources, key uint64, elig []int32) *nodeRec {
	for _, c := range elig {
		var hit *nodeRec
		n := 0
		p.index[c].DescendLessOrEqual(slotKey{slots: key - 1, seq: math.MaxUint32}, func(k slotKey) bool {
			n++
			if r := p.mustNode(k.seq); r.free().Fits(need) {
				hit = r
				return false
			}
			return n < belowScan
		})
		if hit != nil {
			return hit
		}
	}
	return nil
}

// bind records a placement of size on rec, which must fit it, and returns
// the node's record after it.
func (p *poolState) bind(rec *nodeRec, size Resources) *nodeRec {
	p.used = p.used.Add(size)
	p.placements++
	return p.adjust(rec, size, 1)
}

// release removes the placement pr and returns its node's record after it.
func (p *poolState) release(sandboxID string, pr placementRec) (*nodeRec, error) {
	rec, ok := p.nodeBySeq(pr.nodeSeq)
	if !ok || rec.count == 0 || !rec.used.Fits(pr.size) {
		return nil, errdefs.New(errdefs.Internal, "placement of sandbox %s is not on its node %d", sandboxID, pr.nodeSeq)
	}
	p.used = p.used.Sub(pr.size)
	p.placements--
	return p.adjust(rec, Resources{}.Sub(pr.size), -1), nil
}

// adjust adds delta to rec's usage and n to its count, in place when this
// writer made rec and in a copy otherwise, and moves the node in its class
// index when its key changed.
func (p *poolState) adjust(rec *nodeRec, delta Resources, n int32) *nodeRec {
	var before slotKey
	if rec.up {
		before = p.keyOf(rec)
	}
	w := rec
	if rec.owner != p.owner {
		cp := *rec
		cp.owner = p.owner
		w = &cp
		p.nodes.set(p.owner, w.seq, w)
	}
	w.used = w.used.Add(delta)
	w.count += n
	if w.up {
		if after := p.keyOf(w); after != before {
			p.index[w.class].Delete(p.owner, before)
			p.index[w.class].Insert(p.owner, after)
		}
	}
	return w
}
