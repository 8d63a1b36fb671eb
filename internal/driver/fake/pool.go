package fake

import (
	"slices"
	"sync"

	"github.com/denhq/den/internal/driver"
)

// The fake's warm pools (driver.Pooler) hold nothing: a fake sandbox costs
// nothing to start, so a declared pool is full at once and stays full, and
// a create of its shape is an ordinary Create. Tests of the node and the
// server use it to see pools declared and reported.

// pools is the declared pools of one Driver.
type pools struct {
	mu   sync.Mutex
	decl []driver.Pool
}

// SetPools implements driver.Pooler.
func (d *Driver) SetPools(p []driver.Pool) {
	d.pools.mu.Lock()
	defer d.pools.mu.Unlock()
	d.pools.decl = slices.Clone(p)
}

// PoolStatus implements driver.Pooler: every declared pool is full.
func (d *Driver) PoolStatus() []driver.PoolStatus {
	d.pools.mu.Lock()
	defer d.pools.mu.Unlock()
	out := make([]driver.PoolStatus, 0, len(d.pools.decl))
	for _, p := range d.pools.decl {
		out = append(out, driver.PoolStatus{Key: p.Key, Ready: max(p.Size, 0), Size: max(p.Size, 0)})
	}
	return out
}
