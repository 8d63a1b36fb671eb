package node

import (
	"runtime"
	"slices"
	"strings"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/hostmem"
	"github.com/denhq/den/internal/store"
)

// A node runs sandboxes on several runtimes: its default driver
// (Config.Driver) and any others (Config.Runtimes), each known by its
// Capabilities().Name. A sandbox's record names its runtime, and every
// call for the sandbox goes to that runtime's driver. One-off sandboxes
// without a record (build steps) run on the default.

// Accelerated is implemented by drivers whose sandboxes run on a
// hardware or software accelerator ("kvm", "tcg").
type Accelerated interface {
	Accel() string
}

// RuntimeInfo describes one of the node's runtimes.
type RuntimeInfo struct {
	driver.Capabilities
	// Accel is the acceleration the runtime uses, when it has one.
	Accel string `json:"accel,omitempty"`
	// Default is true for the runtime a create that names none gets.
	Default bool `json:"default,omitempty"`
}

// Resources are the host's CPUs and memory.
type Resources struct {
	CPUs              int
	MemoryMB          int64
	MemoryAvailableMB int64
}

// Resources reads the host's CPUs and memory (memory 0 when
// /proc/meminfo cannot be read).
func (n *Node) Resources() Resources {
	r := Resources{CPUs: runtime.NumCPU()}
	if mem, err := hostmem.Read(); err == nil {
		r.MemoryMB, r.MemoryAvailableMB = mem.TotalMB, mem.AvailableMB
	}
	return r
}

// drivers are the node's drivers, the default first.
func (n *Node) drivers() []driver.Driver {
	return append([]driver.Driver{n.cfg.Driver}, n.cfg.Runtimes...)
}

// runtime returns the driver named name; "" is the default.
// InvalidArgument names the runtimes there are.
func (n *Node) runtime(name string) (driver.Driver, error) {
	if name == "" {
		return n.cfg.Driver, nil
	}
	var names []string
	for _, d := range n.drivers() {
		if d.Capabilities().Name == name {
			return d, nil
		}
		names = append(names, d.Capabilities().Name)
	}
	return nil, errdefs.New(errdefs.InvalidArgument, "unknown runtime %q: node %s runs %s", name, n.cfg.ID, strings.Join(names, ", "))
}

// drv is the driver of sandbox id: its record's runtime, else the default.
// A node with one runtime has nothing to look up; otherwise the runtime of
// a sandbox this node started or has looked up once is remembered (it
// never changes), since on an agent each record read is a round trip to
// the server, and every guest stream and watcher asks.
func (n *Node) drv(id string) driver.Driver {
	if len(n.cfg.Runtimes) == 0 {
		return n.cfg.Driver
	}
	if d, ok := n.runtimeOf.Load(id); ok {
		return d.(driver.Driver)
	}
	sb, err := n.records.Snapshot().Sandbox(id)
	if err != nil {
		return n.cfg.Driver
	}
	d := n.driverOf(sb)
	n.runtimeOf.Store(id, d)
	return d
}

// ranOn remembers that sandbox id runs on d (see drv).
func (n *Node) ranOn(id string, d driver.Driver) {
	if len(n.cfg.Runtimes) > 0 {
		n.runtimeOf.Store(id, d)
	}
}

// forgetRuntime drops what drv remembers of sandbox id, once it is gone.
func (n *Node) forgetRuntime(id string) { n.runtimeOf.Delete(id) }

// driverOf is the driver of sb's runtime, the default one when the node
// has no such runtime.
func (n *Node) driverOf(sb *store.Sandbox) driver.Driver {
	if d, err := n.runtime(sb.Runtime); err == nil {
		return d
	}
	return n.cfg.Driver
}

// suspender is the driver.Suspender of sandbox id's runtime; nil when
// suspend is off on the node or the runtime cannot.
func (n *Node) suspender(id string) driver.Suspender {
	if n.snaps == nil {
		return nil
	}
	s, _ := n.drv(id).(driver.Suspender)
	return s
}

// Runtimes describes the node's runtimes, the default first. Suspend is
// true only for those that can while the node keeps snapshots.
func (n *Node) Runtimes() []RuntimeInfo {
	var out []RuntimeInfo
	for i, d := range n.drivers() {
		info := RuntimeInfo{Capabilities: n.capabilities(d), Default: i == 0}
		if a, ok := d.(Accelerated); ok {
			info.Accel = a.Accel()
		}
		out = append(out, info)
	}
	return out
}

// Runtime describes runtime name ("" the default); InvalidArgument for
// one the node does not run.
func (n *Node) Runtime(name string) (RuntimeInfo, error) {
	d, err := n.runtime(name)
	if err != nil {
		return RuntimeInfo{}, err
	}
	i := slices.IndexFunc(n.Runtimes(), func(r RuntimeInfo) bool { return r.Name == d.Capabilities().Name })
	return n.Runtimes()[i], nil
}

// capabilities are d's, with Suspend off when the node keeps no snapshots.
func (n *Node) capabilities(d driver.Driver) driver.Capabilities {
	c := d.Capabilities()
	_, ok := d.(driver.Suspender)
	c.Suspend = ok && n.snaps != nil
	return c
}

// anySuspender reports whether one of the node's runtimes can suspend.
func (n *Node) anySuspender() bool {
	for _, d := range n.drivers() {
		if _, ok := d.(driver.Suspender); ok {
			return true
		}
	}
	return false
}

// stepDriver runs build steps: the first runtime that captures a root
// filesystem's changes (Capabilities().UpperDir).
func (n *Node) stepDriver() driver.Driver {
	for _, d := range n.drivers() {
		if d.Capabilities().UpperDir {
			return d
		}
	}
	return n.cfg.Driver
}
