// Package schedbench is the in-process benchmark of the scheduler's
// decision core (no raft, no network): a simulated cluster pre-filled to a
// target occupancy, steady place/delete churn with a fixed mix of sandbox
// sizes and constraints, bursts, fill to the first failure and largest-shape
// headroom, with the scheduler's invariants checked after every phase. A
// naive linear-scan best-fit runs in the same harness as a floor.
// `den bench scheduler` and the package's Go benchmarks both use it.
package schedbench

import (
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/denhq/den/internal/scheduler"
)

// Workload documents the simulated cluster and request mix; it is printed
// with every report.
const Workload = "nodes: 60% 64 vCPU/256 GiB/2 TiB, 30% 96/384/3 TiB, 10% GPU 96/384/3 TiB " +
	"(label gpu=h100, runtimes gvisor+qemu); 30% of non-GPU nodes also run qemu; every node has region=a|b|c. " +
	"Pools: shared plus 50 dedicated tenant pools holding 10% of the nodes (64/256 nodes; half of the tenants " +
	"overflow to shared). Sandbox shapes (vCPU/GiB): 1/4, 2/8, 1/2, 4/16, 8/32 weighted 45/25/10/15/5, disk 10 GiB " +
	"per vCPU. Constraints: 30% runtime gvisor + one region, 10% runtime qemu + gpu=h100, 5% from a dedicated " +
	"tenant (their own mix: 30% region, else none), the rest unconstrained."

// Shapes are the sandbox shapes of the mix, largest last.
var Shapes = []scheduler.Resources{size(1, 4), size(2, 8), size(1, 2), size(4, 16), size(8, 32)}

var shapeWeights = []int{45, 25, 10, 15, 5}

const dedicatedPools = 50

func size(cpu, gb int64) scheduler.Resources {
	return scheduler.Resources{CPUMillis: cpu * 1000, MemoryMB: gb * 1024, DiskMB: cpu * 10 * 1024}
}

func nodeCap(cpu, gb, tb int64) scheduler.Resources {
	return scheduler.Resources{CPUMillis: cpu * 1000, MemoryMB: gb * 1024, DiskMB: tb * 1024 * 1024}
}

// Cluster is a simulated cluster: its pools and nodes.
type Cluster struct {
	Pools []scheduler.Pool
	Nodes []scheduler.Node
}

var regions = []string{"a", "b", "c"}

// NewCluster builds the cluster of Workload with n nodes.
func NewCluster(n int, seed uint64) Cluster {
	rng := rand.New(rand.NewPCG(seed, 1))
	var c Cluster
	for i := range dedicatedPools {
		name := "tenant-" + strconv.Itoa(i)
		c.Pools = append(c.Pools, scheduler.Pool{Name: name, Tenant: name, OverflowToShared: i%2 == 0})
	}
	dedicated := n / 10
	for i := range n {
		node := scheduler.Node{ID: fmt.Sprintf("node-%06d", i), Capacity: nodeCap(64, 256, 2),
			Runtimes: []string{"gvisor"}, Labels: map[string]string{"region": regions[i%3]}}
		switch r := rng.IntN(100); {
		case i < dedicated:
			node.Pool = c.Pools[i%dedicatedPools].Name
		case r < 10:
			node.Capacity = nodeCap(96, 384, 3)
			node.Runtimes = []string{"gvisor", "qemu"}
			node.Labels["gpu"] = "h100"
		case r < 40:
			node.Capacity = nodeCap(96, 384, 3)
		}
		if i >= dedicated && node.Labels["gpu"] == "" && rng.IntN(10) < 3 {
			node.Runtimes = append(node.Runtimes, "qemu")
		}
		c.Nodes = append(c.Nodes, node)
	}
	return c
}

// Build returns a scheduler holding c, with the shared pool's algorithm.
func (c Cluster) Build(alg scheduler.Algorithm) (*scheduler.Scheduler, error) {
	s := scheduler.New()
	s.SetSharedAlgorithm(alg)
	for _, p := range c.Pools {
		p.Algorithm = alg
		if err := s.AddPool(p); err != nil {
			return nil, err
		}
	}
	for _, n := range c.Nodes {
		if err := s.UpsertNode(n); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// mix draws requests of the workload's mix with fixed seeds.
type mix struct {
	rng           *rand.Rand
	regionC       []*scheduler.Constraints
	gpuC          *scheduler.Constraints
	next          int
	prefix        string
	tenants       int
	unconstrained bool
}

func newMix(seed uint64, prefix string) *mix {
	m := &mix{rng: rand.New(rand.NewPCG(seed, 2)), prefix: prefix, tenants: dedicatedPools,
		gpuC: scheduler.NewConstraints("qemu", map[string]string{"gpu": "h100"})}
	for _, r := range regions {
		m.regionC = append(m.regionC, scheduler.NewConstraints("gvisor", map[string]string{"region": r}))
	}
	return m
}

func (m *mix) shape() scheduler.Resources {
	r := m.rng.IntN(100)
	for i, w := range shapeWeights {
		if r < w {
			return Shapes[i]
		}
		r -= w
	}
	return Shapes[0]
}

// request draws the next request; tenant >= 0 forces a dedicated tenant,
// -1 draws one (5%), -2 forces a shared-pool tenant.
func (m *mix) request(tenant int) scheduler.Request {
	m.next++
	req := scheduler.Request{SandboxID: m.prefix + strconv.Itoa(m.next), Size: m.shape(), Tenant: "shared-tenant"}
	if m.unconstrained {
		return req
	}
	if tenant == -1 && m.rng.IntN(100) < 5 {
		tenant = m.rng.IntN(m.tenants)
	}
	r := m.rng.IntN(100)
	if tenant >= 0 {
		req.Tenant = "tenant-" + strconv.Itoa(tenant)
		if r < 30 {
			req.Constraints = m.regionC[m.rng.IntN(len(regions))]
		}
		return req
	}
	switch {
	case r < 30:
		req.Constraints = m.regionC[m.rng.IntN(len(regions))]
	case r < 40:
		req.Constraints = m.gpuC
	}
	return req
}
