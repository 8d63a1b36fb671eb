package scheduler

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Snapshot is an immutable view of the scheduler's pools. Reading it never
// blocks decisions, and later decisions never change it.
type Snapshot struct {
	pools map[string]*poolState
}

// NodeInfo is a node with its usage, as a snapshot holds it.
type NodeInfo struct {
	Node       Node
	Used       Resources
	Placements int
}

// Free is the node's unused capacity.
func (n NodeInfo) Free() Resources { return n.Node.Capacity.Sub(n.Used) }

// Pools returns the names of the pools, sorted.
func (s *Snapshot) Pools() []string { return slices.Sorted(maps.Keys(s.pools)) }

// Usage returns the placed resources and the capacity of a pool.
func (s *Snapshot) Usage(pool string) (used, capacity Resources) {
	if p, ok := s.pools[pool]; ok {
		return p.used, p.capacity
	}
	return Resources{}, Resources{}
}

// Node returns a node of a pool.
func (s *Snapshot) Node(pool, id string) (NodeInfo, bool) {
	p, ok := s.pools[pool]
	if !ok {
		return NodeInfo{}, false
	}
	r, ok := p.node(id)
	if !ok {
		return NodeInfo{}, false
	}
	return r.info(), true
}

// Placements is the number of live placements in a pool.
func (s *Snapshot) Placements(pool string) int {
	if p, ok := s.pools[pool]; ok {
		return p.placements
	}
	return 0
}

// EachNode calls fn for every node of a pool, in the order they were
// added, until it returns false.
func (s *Snapshot) EachNode(pool string, fn func(NodeInfo) bool) {
	if p, ok := s.pools[pool]; ok {
		p.nodes.each(func(r *nodeRec) bool { return fn(r.info()) })
	}
}

func (r *nodeRec) info() NodeInfo {
	return NodeInfo{Node: *r.node, Used: r.used, Placements: int(r.count)}
}

// Working is the pools' working states, with the decisions not yet
// committed, and their placements: the writer's own view, for checks and
// tests. A committed Snapshot holds per node only the sums of its
// placements; which sandbox is where is the store's to say.
type Working struct {
	*Snapshot
	placed map[string]map[string]placementRec // pool -> sandbox -> placement
}

// PlacementsOn returns the placements on a node of a pool, by sandbox ID.
func (w *Working) PlacementsOn(pool, nodeID string) []Placement {
	p, ok := w.pools[pool]
	if !ok {
		return nil
	}
	r, ok := p.node(nodeID)
	if !ok {
		return nil
	}
	var out []Placement
	for _, e := range w.sorted(pool) {
		if e.pr.nodeSeq == r.seq {
			out = append(out, e.placement(pool, r))
		}
	}
	return out
}

// EachPlacement calls fn for every placement of a pool, node by node in
// the order the nodes were added and on a node by sandbox ID, until it
// returns false.
func (w *Working) EachPlacement(pool string, fn func(Placement) bool) {
	p, ok := w.pools[pool]
	if !ok {
		return
	}
	for _, e := range w.sorted(pool) {
		r, _ := p.nodeBySeq(e.pr.nodeSeq)
		if !fn(e.placement(pool, r)) {
			return
		}
	}
}

type placedEntry struct {
	id string
	pr placementRec
}

func (e placedEntry) placement(pool string, r *nodeRec) Placement {
	p := Placement{SandboxID: e.id, Pool: pool, Tenant: e.pr.tenant, Size: e.pr.size}
	if r != nil {
		p.NodeID = r.node.ID
	}
	return p
}

// sorted is a pool's placements by node sequence, then sandbox ID.
func (w *Working) sorted(pool string) []placedEntry {
	out := make([]placedEntry, 0, len(w.placed[pool]))
	for id, pr := range w.placed[pool] {
		out = append(out, placedEntry{id: id, pr: pr})
	}
	slices.SortFunc(out, func(a, b placedEntry) int {
		if a.pr.nodeSeq != b.pr.nodeSeq {
			return cmp.Compare(a.pr.nodeSeq, b.pr.nodeSeq)
		}
		return strings.Compare(a.id, b.id)
	})
	return out
}

// Check verifies the scheduler's invariants on the working state and
// returns the first violation:
//   - every node's recorded usage and count are the sums of the live
//     placements on it, and within its capacity (no over-commit);
//   - a dedicated pool's nodes hold only its tenant's sandboxes;
//   - every placement names a node of its pool, and no sandbox is placed
//     in two pools;
//   - exactly the up nodes are in their class index, under their current key;
//   - pool totals match their nodes and placements.
func (w *Working) Check() error {
	seen := map[string]string{}
	for _, name := range w.Pools() {
		for id := range w.placed[name] {
			if other, dup := seen[id]; dup {
				return fmt.Errorf("sandbox %s placed in pools %s and %s", id, other, name)
			}
			seen[id] = name
		}
		if err := w.pools[name].check(w.placed[name]); err != nil {
			return fmt.Errorf("pool %s: %w", name, err)
		}
	}
	return nil
}

// Check verifies what a committed snapshot holds: every node within its
// capacity, exactly the up nodes in their class index under their current
// key, and pool totals that match their nodes. Working.Check also checks
// the placements.
func (s *Snapshot) Check() error {
	for _, name := range s.Pools() {
		if err := s.pools[name].check(nil); err != nil {
			return fmt.Errorf("pool %s: %w", name, err)
		}
	}
	return nil
}

type nodeSum struct {
	used  Resources
	count int32
}

// check verifies the pool's invariants; with placed (nil: not known) also
// that they are the sums of those placements.
func (p *poolState) check(placed map[string]placementRec) error {
	sums := map[uint32]nodeSum{}
	var placedUsed Resources
	for id, pr := range placed {
		r, ok := p.nodeBySeq(pr.nodeSeq)
		switch {
		case !ok:
			return fmt.Errorf("sandbox %s is on node %d, which the pool does not hold", id, pr.nodeSeq)
		case p.spec.Tenant != "" && pr.tenant != p.spec.Tenant:
			return fmt.Errorf("sandbox %s of tenant %q on node %s, dedicated to tenant %q", id, pr.tenant, r.node.ID, p.spec.Tenant)
		}
		s := sums[pr.nodeSeq]
		s.used, s.count = s.used.Add(pr.size), s.count+1
		sums[pr.nodeSeq] = s
		placedUsed = placedUsed.Add(pr.size)
	}
	var used, capacity Resources
	var err error
	indexed, nodes, placements := 0, 0, 0
	p.nodes.each(func(r *nodeRec) bool {
		nodes++
		placements += int(r.count)
		if r.up {
			indexed++
		}
		capacity = capacity.Add(r.node.Capacity)
		used = used.Add(r.used)
		sum := sums[r.seq]
		if placed == nil {
			sum = nodeSum{used: r.used, count: r.count}
		}
		err = p.checkNode(r, sum)
		return err == nil
	})
	if err != nil {
		return err
	}
	inIndex := 0
	for i := range p.index {
		inIndex += p.index[i].Len()
	}
	switch {
	case placements != p.placements || placed != nil && placements != len(placed):
		return fmt.Errorf("%d placements on the nodes, the pool counts %d, the writer holds %d", placements, p.placements, len(placed))
	case nodes != p.nodeCount || nodes != p.nodeIDs.Len():
		return fmt.Errorf("%d nodes in the table, %d counted, %d by ID", nodes, p.nodeCount, p.nodeIDs.Len())
	case inIndex != indexed:
		return fmt.Errorf("%d nodes in the indexes, %d up", inIndex, indexed)
	case used != p.used || placed != nil && placedUsed != p.used:
		return fmt.Errorf("nodes record %+v used, placements sum to %+v, the pool records %+v", used, placedUsed, p.used)
	case capacity != p.capacity:
		return fmt.Errorf("nodes sum to %+v, pool records %+v", capacity, p.capacity)
	}
	return nil
}

func (p *poolState) checkNode(r *nodeRec, sum nodeSum) error {
	id := r.node.ID
	if sum.used != r.used || sum.count != r.count {
		return fmt.Errorf("node %s records %+v in %d placements, its placements sum to %+v in %d", id, r.used, r.count, sum.used, sum.count)
	}
	if !r.node.Capacity.Fits(sum.used) {
		return fmt.Errorf("node %s over-committed: %+v placed on capacity %+v", id, sum.used, r.node.Capacity)
	}
	if r.capacity != r.node.Capacity || r.up != (r.node.Status == NodeUp) {
		return fmt.Errorf("node %s: record's capacity or status differs from its node's", id)
	}
	if !r.up {
		return nil
	}
	k, ok := p.index[r.class].Get(p.keyOf(r))
	if !ok || p.mustNode(k.seq) != r {
		return fmt.Errorf("node %s is up but not in its class index under its current key", id)
	}
	return nil
}
