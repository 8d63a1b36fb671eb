package fake

import (
	"context"
	"slices"
	"sync"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/warmpool"
)

// The fake's warm pools (driver.Pooler) hold nothing: a fake sandbox costs
// nothing to start, so a declared pool is full at once and stays full, and
// a create of its shape is an ordinary Create. Claim (driver.Claimer) is
// that Create for the shape of a declared pool, nothing for others. Tests
// of the node and the server use it to see pools declared, reported and
// claimed from.

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

// Claim implements driver.Claimer: Create for a spec of the shape of a
// declared pool of sandboxes (not of clones), nil for others.
func (d *Driver) Claim(ctx context.Context, spec driver.Spec) (*driver.Handle, error) {
	key := warmpool.ShapeOf(spec).Key
	d.pools.mu.Lock()
	found := slices.ContainsFunc(d.pools.decl, func(p driver.Pool) bool {
		return p.Size > 0 && p.From == "" && warmpool.ShapeOf(p.Spec).Key == key
	})
	d.pools.mu.Unlock()
	if !found {
		return nil, nil
	}
	return d.Create(ctx, spec)
}
