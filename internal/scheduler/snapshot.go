package scheduler

import (
	"fmt"
	"maps"
	"slices"
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

// PlacementsOn returns the placements on a node of a pool, in the order
// they were made.
func (s *Snapshot) PlacementsOn(pool, nodeID string) []Placement {
	p, ok := s.pools[pool]
	if !ok {
		return nil
	}
	r, ok := p.node(nodeID)
	if !ok {
		return nil
	}
	out := make([]Placement, 0, len(r.placements))
	for _, pr := range r.placements {
		out = append(out, pr.placement(pool))
	}
	return out
}

func (pr *placementRec) placement(pool string) Placement {
	return Placement{SandboxID: pr.sandboxID, NodeID: pr.nodeID, Pool: pool, Tenant: pr.tenant, Size: pr.size}
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

// Check verifies the scheduler's invariants on the snapshot and returns
// the first violation:
//   - every node's recorded usage is the sum of its live placements, and is
//     within its capacity (no over-commit);
//   - a dedicated pool's nodes hold only its tenant's sandboxes;
//   - every placement names the node that holds it, and no sandbox is
//     placed twice in the pool;
//   - exactly the up nodes are in their class index, under their current key;
//   - pool totals match their nodes and placements.
func (s *Snapshot) Check() error {
	for _, name := range s.Pools() {
		if err := s.pools[name].check(); err != nil {
			return fmt.Errorf("pool %s: %w", name, err)
		}
	}
	return nil
}

func (p *poolState) check() error {
	var used, capacity Resources
	var err error
	indexed, nodes, placements := 0, 0, 0
	seen := map[string]bool{}
	p.nodes.each(func(r *nodeRec) bool {
		nodes++
		placements += len(r.placements)
		if r.up {
			indexed++
		}
		capacity = capacity.Add(r.node.Capacity)
		var sum Resources
		for _, pr := range r.placements {
			if err = p.checkPlacement(r, pr, seen); err != nil {
				return false
			}
			sum = sum.Add(pr.size)
		}
		used = used.Add(sum)
		err = p.checkNode(r, sum)
		return err == nil
	})
	if err != nil {
		return err
	}
	inIndex := 0
	for _, t := range p.index {
		inIndex += t.Len()
	}
	switch {
	case placements != p.placements:
		return fmt.Errorf("%d placements on the nodes, the pool counts %d", placements, p.placements)
	case nodes != p.nodeCount || nodes != p.nodeIDs.Len():
		return fmt.Errorf("%d nodes in the table, %d counted, %d by ID", nodes, p.nodeCount, p.nodeIDs.Len())
	case inIndex != indexed:
		return fmt.Errorf("%d nodes in the indexes, %d up", inIndex, indexed)
	case used != p.used:
		return fmt.Errorf("placements sum to %+v, pool records %+v", used, p.used)
	case capacity != p.capacity:
		return fmt.Errorf("nodes sum to %+v, pool records %+v", capacity, p.capacity)
	}
	return nil
}

func (p *poolState) checkPlacement(r *nodeRec, pr *placementRec, seen map[string]bool) error {
	switch {
	case p.spec.Tenant != "" && pr.tenant != p.spec.Tenant:
		return fmt.Errorf("sandbox %s of tenant %q on a node dedicated to tenant %q", pr.sandboxID, pr.tenant, p.spec.Tenant)
	case pr.nodeSeq != r.seq || pr.nodeID != r.node.ID:
		return fmt.Errorf("sandbox %s held by node %s names node %s", pr.sandboxID, r.node.ID, pr.nodeID)
	case seen[pr.sandboxID]:
		return fmt.Errorf("sandbox %s placed twice", pr.sandboxID)
	}
	seen[pr.sandboxID] = true
	return nil
}

func (p *poolState) checkNode(r *nodeRec, sum Resources) error {
	id := r.node.ID
	if sum != r.used || int(r.count) != len(r.placements) {
		return fmt.Errorf("node %s records %+v in %d placements, its placements sum to %+v in %d", id, r.used, r.count, sum, len(r.placements))
	}
	if !r.node.Capacity.Fits(sum) {
		return fmt.Errorf("node %s over-committed: %+v placed on capacity %+v", id, sum, r.node.Capacity)
	}
	if r.capacity != r.node.Capacity || r.up != (r.node.Status == NodeUp) {
		return fmt.Errorf("node %s: record's capacity or status differs from its node's", id)
	}
	if !r.up {
		return nil
	}
	k, ok := p.index[r.class].Get(p.keyOf(r))
	if !ok || k.rec != r {
		return fmt.Errorf("node %s is up but not in its class index under its current key", id)
	}
	return nil
}

// EachPlacement calls fn for every placement of a pool, node by node in
// the order the nodes were added, until it returns false.
func (s *Snapshot) EachPlacement(pool string, fn func(Placement) bool) {
	p, ok := s.pools[pool]
	if !ok {
		return
	}
	p.nodes.each(func(r *nodeRec) bool {
		for _, pr := range r.placements {
			if !fn(pr.placement(pool)) {
				return false
			}
		}
		return true
	})
}
