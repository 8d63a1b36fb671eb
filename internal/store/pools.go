package store

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/denhq/den/internal/errdefs"
)

// Pool is a warm pool: a declared number of started, never-used sandboxes
// of one shape (an image or a snapshot object, and a size) that nodes keep
// ready so that a create of that shape claims one instead of booting. It
// belongs to a tenant, who alone sees and changes it. A data contract
// persisted in the raft log: add fields, never rename or retype them.
type Pool struct {
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
	Tenant string `json:"tenant"`

	// Image is the reference the spares are created from; with Snapshot
	// set it is the snapshot's image (for display).
	Image string `json:"image,omitempty"`
	// Snapshot is the ID of the snapshot object (SandboxSnapshot) the
	// spares are cloned from; empty for an image pool.
	Snapshot string `json:"snapshot,omitempty"`

	// Size is how many spares to keep ready.
	Size int `json:"size"`
	// Runtime runs the spares (a node's runtime name); empty: the node's
	// default. A snapshot pool's is its snapshot's.
	Runtime string `json:"runtime,omitempty"`

	CPUs     float64 `json:"cpus,omitempty"`
	MemoryMB int64   `json:"memory_mb,omitempty"`
	DiskMB   int64   `json:"disk_mb,omitempty"`
	User     string  `json:"user,omitempty"`

	CreatedAt   time.Time `json:"created_at"`
	ModifyIndex uint64    `json:"modify_index"`
}

// Clone returns a copy of p.
func (p *Pool) Clone() *Pool {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}

// poolCmd is the body of put_pool.
type poolCmd struct {
	Pool *Pool `json:"pool"`
}

func validatePool(p *Pool) error {
	switch {
	case p.ID == "":
		return errdefs.New(errdefs.InvalidArgument, "pool id is required")
	case p.Tenant == "":
		return errdefs.New(errdefs.InvalidArgument, "pool %s: tenant is required", p.ID)
	case p.Image == "" && p.Snapshot == "":
		return errdefs.New(errdefs.InvalidArgument, "pool %s: an image or a snapshot is required", p.ID)
	case p.Size < 0:
		return errdefs.New(errdefs.InvalidArgument, "pool %s: size must not be negative", p.ID)
	}
	return nil
}

// applyPutPool creates or replaces a pool; its name must stay unique
// within its tenant.
func applyPutPool(txn *memdb.Txn, index uint64, body []byte) error {
	var c poolCmd
	if err := decodeBody(cmdPutPool, body, &c); err != nil {
		return err
	}
	p := c.Pool
	if p == nil {
		return errdefs.New(errdefs.InvalidArgument, "pool id is required")
	}
	if err := validatePool(p); err != nil {
		return err
	}
	if p.Name != "" {
		other, err := txn.First(tablePools, indexName, p.Tenant, p.Name)
		if err != nil {
			return fmt.Errorf("apply put pool %s: %w", p.ID, err)
		}
		if other != nil && other.(*Pool).ID != p.ID {
			return errdefs.New(errdefs.AlreadyExists, "pool name %q is taken by pool %s", p.Name, other.(*Pool).ID)
		}
	}
	p.ModifyIndex = index
	if err := txn.Insert(tablePools, p); err != nil {
		return fmt.Errorf("apply put pool %s: %w", p.ID, err)
	}
	return nil
}

// PutPool creates or replaces a pool record. A zero CreatedAt becomes now;
// on success p carries it and its ModifyIndex.
func (s *Store) PutPool(ctx context.Context, p *Pool) error {
	if p == nil {
		return errdefs.New(errdefs.InvalidArgument, "put pool: no pool")
	}
	c := p.Clone()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = time.Now()
	}
	c.CreatedAt = normalTime(c.CreatedAt)
	if err := validatePool(c); err != nil {
		return fmt.Errorf("put pool: %w", err)
	}
	idx, err := s.apply(ctx, cmdPutPool, poolCmd{Pool: c})
	if err != nil {
		return err
	}
	p.CreatedAt, p.ModifyIndex = c.CreatedAt, idx
	return nil
}

// DeletePool removes a pool record; NotFound when absent.
func (s *Store) DeletePool(ctx context.Context, id string) error {
	_, err := s.apply(ctx, cmdDeletePool, idCmd{ID: id})
	return err
}

// Pool returns the pool with the ID; NotFound when absent.
func (sn *Snapshot) Pool(id string) (*Pool, error) {
	raw, err := sn.db.Txn(false).First(tablePools, indexID, id)
	if err != nil {
		return nil, fmt.Errorf("get pool %s: %w", id, err)
	}
	if raw == nil {
		return nil, errdefs.New(errdefs.NotFound, "pool %s not found", id)
	}
	return raw.(*Pool).Clone(), nil
}

// PoolByName returns the tenant's pool with the name; NotFound when none.
func (sn *Snapshot) PoolByName(tenant, name string) (*Pool, error) {
	raw, err := sn.db.Txn(false).First(tablePools, indexName, tenant, name)
	if err != nil {
		return nil, fmt.Errorf("get pool by name: %w", err)
	}
	if raw == nil {
		return nil, errdefs.New(errdefs.NotFound, "pool named %q not found", name)
	}
	return raw.(*Pool).Clone(), nil
}

// Pools lists the tenant's pools (every pool when tenant is empty) ordered
// by (CreatedAt, ID).
func (sn *Snapshot) Pools(tenant string) ([]*Pool, error) {
	it, err := sn.db.Txn(false).Get(tablePools, indexCreated)
	if err != nil {
		return nil, fmt.Errorf("list pools: %w", err)
	}
	var out []*Pool
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if p := raw.(*Pool); tenant == "" || p.Tenant == tenant {
			out = append(out, p.Clone())
		}
	}
	return out, nil
}

// PoolsChanged returns a channel that is closed once any pool is put or
// deleted after sn was taken (including by a snapshot restore).
func (sn *Snapshot) PoolsChanged() <-chan struct{} {
	it, err := sn.db.Txn(false).Get(tablePools, indexID)
	if err != nil {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return it.WatchCh()
}
