package scheduler

import (
	"maps"
	"slices"
	"strings"
)

// SharedPool is the name of the pool every tenant without dedicated
// machines places into. It always exists.
const SharedPool = "shared"

// Resources is an amount of each schedulable resource. All fields are
// non-negative.
type Resources struct {
	CPUMillis int64 `json:"cpu_millis"`
	MemoryMB  int64 `json:"memory_mb"`
	DiskMB    int64 `json:"disk_mb"`
}

// Fits reports whether r is at least need in every dimension.
func (r Resources) Fits(need Resources) bool {
	return r.CPUMillis >= need.CPUMillis && r.MemoryMB >= need.MemoryMB && r.DiskMB >= need.DiskMB
}

// Add returns r + o.
func (r Resources) Add(o Resources) Resources {
	return Resources{r.CPUMillis + o.CPUMillis, r.MemoryMB + o.MemoryMB, r.DiskMB + o.DiskMB}
}

// Sub returns r - o.
func (r Resources) Sub(o Resources) Resources {
	return Resources{r.CPUMillis - o.CPUMillis, r.MemoryMB - o.MemoryMB, r.DiskMB - o.DiskMB}
}

func (r Resources) negative() bool { return r.CPUMillis < 0 || r.MemoryMB < 0 || r.DiskMB < 0 }

// NodeStatus is whether a node takes new placements.
type NodeStatus uint8

const (
	// NodeUp nodes take new placements.
	NodeUp NodeStatus = iota
	// NodeDraining nodes keep their placements and take no new ones.
	NodeDraining
	// NodeDown nodes take no new placements; their placements are still
	// counted until they are released (the control plane reports them lost).
	NodeDown
)

func (s NodeStatus) String() string {
	switch s {
	case NodeUp:
		return "up"
	case NodeDraining:
		return "draining"
	case NodeDown:
		return "down"
	}
	return "unknown"
}

// Node is a machine that runs sandboxes, as the scheduler sees it. The
// scheduler copies a Node it is given; the caller may reuse its maps.
type Node struct {
	ID       string
	Pool     string // "" means SharedPool
	Capacity Resources
	// Labels and Runtimes are the node's constraint-relevant attributes;
	// with Pool they make the node's computed class.
	Labels   map[string]string
	Runtimes []string
	Status   NodeStatus
}

// Algorithm is how a pool chooses among the nodes that fit.
type Algorithm uint8

const (
	// BestFit takes the feasible node with the least free binding
	// resource: tight packing that keeps large holes for large shapes.
	BestFit Algorithm = iota
	// Spread takes the feasible node with the most free binding resource.
	Spread
)

// Pool is a set of nodes with one placement loop. A pool with a Tenant is
// dedicated: only that tenant's sandboxes land on its nodes.
type Pool struct {
	Name      string
	Tenant    string // "" for the shared pool
	Algorithm Algorithm
	// OverflowToShared is the owning tenant's policy: when none of its
	// dedicated pools fits a request, try the shared pool.
	OverflowToShared bool
}

// Constraints restrict a request to nodes with a runtime and labels. Build
// them with NewConstraints; they are immutable and may be shared by many
// requests (the feasibility cache is keyed on them).
type Constraints struct {
	runtime string
	labels  map[string]string
	key     string
}

// NewConstraints returns constraints requiring the runtime ("" for any)
// and every label in labels with the same value.
func NewConstraints(runtime string, labels map[string]string) *Constraints {
	return &Constraints{runtime: runtime, labels: maps.Clone(labels), key: runtime + "\x00" + labelKey(labels)}
}

// Runtime is the required runtime, "" for any.
func (c *Constraints) Runtime() string { return c.runtime }

// Labels returns a copy of the required labels.
func (c *Constraints) Labels() map[string]string { return maps.Clone(c.labels) }

// Request asks for one sandbox to be placed.
type Request struct {
	SandboxID string
	Tenant    string
	Size      Resources
	// Constraints, when not nil, restrict the nodes the sandbox may use.
	Constraints *Constraints
	// Wait parks the request in the blocked tracker when nothing fits,
	// instead of only failing it; it is placed when matching capacity frees.
	Wait bool
}

// Placement is a decision: a sandbox bound to a node of a pool.
type Placement struct {
	SandboxID string    `json:"sandbox_id"`
	NodeID    string    `json:"node_id"`
	Pool      string    `json:"pool"`
	Tenant    string    `json:"tenant,omitempty"`
	Size      Resources `json:"size"`
	// Woken is set on the placement of a parked request.
	Woken bool `json:"woken,omitempty"`
}

func labelKey(labels map[string]string) string {
	if len(labels) == 0 {
		return ""
	}
	keys := slices.Sorted(maps.Keys(labels))
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(labels[k])
		b.WriteByte(0)
	}
	return b.String()
}
