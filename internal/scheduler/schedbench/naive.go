package schedbench

import (
	"slices"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/scheduler"
)

// naive is the floor: best-fit by a linear scan of every node of the
// request's pools on each decision, checking each node's runtime and
// labels (no classes, no index). Same pool rules as the scheduler.
type naive struct {
	nodes  []naiveNode
	byID   map[string]int
	routes map[string][]string // tenant -> pools
	where  map[string]int      // sandbox -> node
	sizes  map[string]scheduler.Resources
	ref    scheduler.Resources
}

type naiveNode struct {
	node scheduler.Node
	used scheduler.Resources
}

// newNaive copies the cluster and the placements of snap.
func newNaive(c Cluster, snap *scheduler.Working) *naive {
	n := &naive{byID: map[string]int{}, routes: map[string][]string{}, where: map[string]int{}, sizes: map[string]scheduler.Resources{}}
	for _, p := range c.Pools {
		n.routes[p.Tenant] = []string{p.Name}
		if p.OverflowToShared {
			n.routes[p.Tenant] = append(n.routes[p.Tenant], scheduler.SharedPool)
		}
	}
	for _, nd := range c.Nodes {
		if nd.Pool == "" {
			nd.Pool = scheduler.SharedPool
		}
		n.byID[nd.ID] = len(n.nodes)
		n.nodes = append(n.nodes, naiveNode{node: nd})
	}
	n.ref = c.Nodes[0].Capacity
	for _, pool := range snap.Pools() {
		snap.EachPlacement(pool, func(p scheduler.Placement) bool {
			i := n.byID[p.NodeID]
			n.nodes[i].used = n.nodes[i].used.Add(p.Size)
			n.where[p.SandboxID], n.sizes[p.SandboxID] = i, p.Size
			return true
		})
	}
	return n
}

func (nn *naiveNode) admits(k *naiveConstraints) bool {
	if k.runtime != "" && !slices.Contains(nn.node.Runtimes, k.runtime) {
		return false
	}
	for key, v := range k.labels {
		if nn.node.Labels[key] != v {
			return false
		}
	}
	return true
}

type naiveConstraints struct {
	runtime string
	labels  map[string]string
}

// binding is the free share of the binding dimension, as the scheduler's
// slot key, in float.
func (n *naive) binding(free scheduler.Resources) float64 {
	return min(float64(free.CPUMillis)/float64(n.ref.CPUMillis), float64(free.MemoryMB)/float64(n.ref.MemoryMB),
		float64(free.DiskMB)/float64(n.ref.DiskMB))
}

func (n *naive) place(req scheduler.Request, k *naiveConstraints) (scheduler.Placement, error) {
	pools, ok := n.routes[req.Tenant]
	if !ok {
		pools = []string{scheduler.SharedPool}
	}
	for _, pool := range pools {
		best, bestSlack := -1, 0.0
		for i := range n.nodes {
			nd := &n.nodes[i]
			if nd.node.Pool != pool || nd.node.Status != scheduler.NodeUp || !nd.admits(k) {
				continue
			}
			free := nd.node.Capacity.Sub(nd.used)
			if !free.Fits(req.Size) {
				continue
			}
			if slack := n.binding(free.Sub(req.Size)); best < 0 || slack < bestSlack {
				best, bestSlack = i, slack
			}
		}
		if best >= 0 {
			n.nodes[best].used = n.nodes[best].used.Add(req.Size)
			n.where[req.SandboxID], n.sizes[req.SandboxID] = best, req.Size
			return scheduler.Placement{SandboxID: req.SandboxID, NodeID: n.nodes[best].node.ID, Pool: pool, Tenant: req.Tenant, Size: req.Size}, nil
		}
	}
	return scheduler.Placement{}, errdefs.New(errdefs.ResourceExhausted, "no node fits sandbox %s", req.SandboxID)
}

func (n *naive) release(_, id string) error {
	i, ok := n.where[id]
	if !ok {
		return errdefs.New(errdefs.NotFound, "sandbox %s not placed", id)
	}
	n.nodes[i].used = n.nodes[i].used.Sub(n.sizes[id])
	delete(n.where, id)
	delete(n.sizes, id)
	return nil
}
