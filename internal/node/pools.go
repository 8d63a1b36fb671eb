package node

import (
	"fmt"
	"sync"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/hostmem"
	"github.com/denhq/den/internal/store"
)

// Warm pools: the store holds the declared pools (store.Pool); the node
// turns each into the driver's declaration (driver.Pooler.SetPools): an
// image pool into a spec on the image's resolved layers, a snapshot pool
// into the verified checkpoint directory and the spec it was taken from.
// It does so whenever the pools change, and every poolResyncInterval so
// that a tag moved to another image moves its pools' spares along.
// Claims happen in the driver: a create (or clone) of a pool's shape
// takes a spare.

// poolResyncInterval is how often the node re-resolves its pools' images.
const poolResyncInterval = 30 * time.Second

// poolMemoryReserveMB is host memory kept out of the pools' budget.
const poolMemoryReserveMB = 1024

// PoolState is what a node reports of one declared pool.
type PoolState struct {
	// Ready is the number of spares ready to be claimed.
	Ready int
	// Waiting says why the pool is not full, when it is not: its image or
	// snapshot cannot be used, the runtime keeps no pools, a boot failed
	// or the host lacks memory. Empty while it fills or is full.
	Waiting string
}

// poolsState is the node's view of its declared pools, guarded by mu.
type poolsState struct {
	mu sync.Mutex
	// broken holds the pools the node could not declare, with the reason.
	broken map[string]string
	// verified caches snapshot checks by pool: the checkpoint directory and
	// spec of a snapshot digest, so a resync does not rehash its files.
	verified map[string]verifiedSnapshot
}

type verifiedSnapshot struct {
	digest string
	dir    string
	spec   driver.Spec
}

// StartPools starts the loop that keeps the runtimes' pools in line with
// the store's; Close stops it. Each pool goes to its runtime's driver
// (store.Pool.Runtime, "" the default); when no runtime is a
// driver.Pooler it does nothing, and PoolStatus says why.
func (n *Node) StartPools() {
	if len(n.poolers()) == 0 {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		tick := time.NewTicker(poolResyncInterval)
		defer tick.Stop()
		for {
			snap := n.records.Snapshot()
			n.syncPools(snap)
			select {
			case <-n.stop:
				return
			case <-snap.PoolsChanged():
			case <-tick.C:
			}
		}
	}()
}

// poolers are the node's runtimes that keep warm pools, by name.
func (n *Node) poolers() map[string]driver.Pooler {
	out := map[string]driver.Pooler{}
	for _, d := range n.drivers() {
		if p, ok := d.(driver.Pooler); ok {
			out[d.Capabilities().Name] = p
		}
	}
	return out
}

// poolRuntime is the runtime pool rec's spares run on.
func (n *Node) poolRuntime(rec *store.Pool) string {
	if rec.Runtime != "" {
		return rec.Runtime
	}
	return n.cfg.Driver.Capabilities().Name
}

// syncPools declares every pool of snap to its runtime's driver, except
// those whose image, snapshot or runtime cannot be used now (recorded as
// broken, with why).
func (n *Node) syncPools(snap RecordReader) {
	recs, err := snap.Pools("")
	if err != nil {
		n.log.Warn("list pools", "err", err)
		return
	}
	poolers := n.poolers()
	decl := map[string][]driver.Pool{}
	broken := map[string]string{}
	for _, rec := range recs {
		rt := n.poolRuntime(rec)
		if _, ok := poolers[rt]; !ok {
			broken[rec.ID] = fmt.Sprintf("runtime %s keeps no warm pools on node %s", rt, n.cfg.ID)
			continue
		}
		p, err := n.declarePool(snap, rec)
		if err != nil {
			broken[rec.ID] = err.Error()
			continue
		}
		decl[rt] = append(decl[rt], p)
	}
	n.pools.mu.Lock()
	n.pools.broken = broken
	n.pools.mu.Unlock()
	for rt, pooler := range poolers {
		pooler.SetPools(decl[rt])
	}
}

// declarePool is the driver's declaration of pool rec.
func (n *Node) declarePool(snap RecordReader, rec *store.Pool) (driver.Pool, error) {
	if rec.Snapshot == "" {
		img, err := n.cfg.Images.Rootfs(rec.Image)
		if err != nil {
			return driver.Pool{}, fmt.Errorf("image %s: %w", rec.Image, err)
		}
		spec := driver.Spec{Image: img, CPUs: rec.CPUs, MemoryMB: rec.MemoryMB, DiskMB: rec.DiskMB, User: rec.User, Network: networkOn()}
		return driver.Pool{Key: rec.ID, Spec: spec, Size: rec.Size}, nil
	}
	obj, err := snap.SandboxSnapshot(rec.Snapshot)
	if err != nil {
		return driver.Pool{}, err
	}
	if obj.Mode == store.SnapshotModeFilesystem {
		// Sandboxes of a filesystem snapshot boot cold on its image.
		img, err := n.cfg.Images.Rootfs(obj.FilesystemImage)
		if err != nil {
			return driver.Pool{}, fmt.Errorf("image of snapshot %s: %w", obj.ID, err)
		}
		spec := driver.Spec{Image: img, CPUs: rec.CPUs, MemoryMB: rec.MemoryMB, DiskMB: rec.DiskMB, User: rec.User, Network: networkOn()}
		return driver.Pool{Key: rec.ID, Spec: spec, Size: rec.Size}, nil
	}
	n.pools.mu.Lock()
	v, ok := n.pools.verified[rec.ID]
	n.pools.mu.Unlock()
	if !ok || v.digest != obj.Digest {
		dir, spec, err := n.verifyObject(obj)
		if err != nil {
			return driver.Pool{}, err
		}
		v = verifiedSnapshot{digest: obj.Digest, dir: dir, spec: spec}
		n.pools.mu.Lock()
		if n.pools.verified == nil {
			n.pools.verified = map[string]verifiedSnapshot{}
		}
		n.pools.verified[rec.ID] = v
		n.pools.mu.Unlock()
	}
	return driver.Pool{Key: rec.ID, Spec: v.spec, From: v.dir, Size: rec.Size}, nil
}

// PoolStatus reports the state of the declared pools, by pool ID. A pool
// the node has not declared yet (just created) is absent.
func (n *Node) PoolStatus() map[string]PoolState {
	out := map[string]PoolState{}
	poolers := n.poolers()
	if len(poolers) == 0 {
		recs, _ := n.records.Snapshot().Pools("")
		for _, rec := range recs {
			out[rec.ID] = PoolState{Waiting: fmt.Sprintf("runtime %s keeps no warm pools on node %s", n.poolRuntime(rec), n.cfg.ID)}
		}
		return out
	}
	for _, pooler := range poolers {
		for _, st := range pooler.PoolStatus() {
			out[st.Key] = PoolState{Ready: st.Ready, Waiting: st.Waiting}
		}
	}
	n.pools.mu.Lock()
	defer n.pools.mu.Unlock()
	for id, why := range n.pools.broken {
		out[id] = PoolState{Waiting: why}
	}
	return out
}

// PoolMemoryBudgetMB is the memory the node's pools may hold in total,
// counting each spare at its memory limit: the host's memory less a
// reserve. Unavailable when the host's memory cannot be read.
func (n *Node) PoolMemoryBudgetMB() (int64, error) {
	mem, err := hostmem.Read()
	if err != nil {
		return 0, errdefs.Wrap(errdefs.Unavailable, err, "read the host's memory")
	}
	return max(mem.TotalMB-poolMemoryReserveMB, 0), nil
}
