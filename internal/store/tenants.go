package store

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/denhq/den/internal/errdefs"
)

// Tenant is a team sharing a den: its sandboxes, snapshots, pools, SSH
// and API keys are its own, and its quota and rate limit bound what its
// keys may do. A tenant that API keys name but that has no record (keys
// of an older den) has no limits. A data contract persisted in the raft
// log: add fields, never rename or retype them.
type Tenant struct {
	// ID is the tenant's name, as keys and records refer to it.
	ID        string    `json:"id"`
	Quota     Quota     `json:"quota"`
	RateLimit RateLimit `json:"rate_limit"`
	// Placement is where the tenant's sandboxes run in a cluster.
	Placement Placement `json:"placement,omitempty"`

	CreatedAt   time.Time `json:"created_at"`
	ModifyIndex uint64    `json:"modify_index"`
}

// Quota bounds what a tenant holds at once; a zero field is no limit.
type Quota struct {
	// Sandboxes counts the tenant's sandboxes that are not stopped or
	// failed, suspended ones included (they hold disk and memory files).
	Sandboxes int `json:"sandboxes,omitempty"`
	// VCPUs and MemoryMB sum the sizes of the sandboxes that hold CPU and
	// memory: every one not stopped, failed or suspended.
	VCPUs    float64 `json:"vcpus,omitempty"`
	MemoryMB int64   `json:"memory_mb,omitempty"`
	// Snapshots counts the tenant's snapshot objects.
	Snapshots int `json:"snapshots,omitempty"`
}

// RateLimit bounds the API requests of a tenant's keys, as a token
// bucket: PerSecond requests a second on average, bursts of Burst. Zero
// PerSecond is no limit.
type RateLimit struct {
	PerSecond float64 `json:"per_second,omitempty"`
	Burst     int     `json:"burst,omitempty"`
}

// Placement is where a tenant's sandboxes run in a cluster. NodePools are
// the tenant's dedicated node pools, tried in order: their nodes run only
// this tenant's sandboxes, and a pool belongs to one tenant at most. With
// OverflowToShared the shared nodes are tried when none of them has room.
// No NodePools: the shared nodes.
type Placement struct {
	NodePools        []string `json:"node_pools,omitempty"`
	OverflowToShared bool     `json:"overflow_to_shared,omitempty"`
}

// SharedNodePool is the node pool of every tenant without dedicated pools.
const SharedNodePool = "shared"

// Clone returns a copy of t.
func (t *Tenant) Clone() *Tenant {
	if t == nil {
		return nil
	}
	c := *t
	c.Placement.NodePools = slices.Clone(t.Placement.NodePools)
	return &c
}

// tenantCmd is the body of put_tenant.
type tenantCmd struct {
	Tenant *Tenant `json:"tenant"`
}

// tenantName is what a tenant's ID may be: it appears in paths, logs and
// key listings.
var tenantName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidateTenantName checks a tenant name.
func ValidateTenantName(name string) error {
	if !tenantName.MatchString(name) {
		return errdefs.New(errdefs.InvalidArgument, "tenant name %q is invalid: use 1 to 63 lowercase letters, digits and '-', starting with a letter or digit", name)
	}
	return nil
}

func validateTenant(t *Tenant) error {
	if err := ValidateTenantName(t.ID); err != nil {
		return err
	}
	q, r := t.Quota, t.RateLimit
	switch {
	case q.Sandboxes < 0 || q.VCPUs < 0 || q.MemoryMB < 0 || q.Snapshots < 0:
		return errdefs.New(errdefs.InvalidArgument, "tenant %s: quotas must not be negative (0 is no limit)", t.ID)
	case r.PerSecond < 0 || r.Burst < 0:
		return errdefs.New(errdefs.InvalidArgument, "tenant %s: the rate limit must not be negative (0 is no limit)", t.ID)
	}
	seen := map[string]bool{}
	for _, p := range t.Placement.NodePools {
		if err := ValidateNodePool(p); err != nil {
			return err
		}
		if p == SharedNodePool || seen[p] {
			return errdefs.New(errdefs.InvalidArgument, "tenant %s: node pool %q is listed twice or is the shared pool", t.ID, p)
		}
		seen[p] = true
	}
	return nil
}

// ValidateNodePool checks a node pool name: 1 to 63 lowercase letters,
// digits and '-'.
func ValidateNodePool(name string) error {
	if !tenantName.MatchString(name) {
		return errdefs.New(errdefs.InvalidArgument, "node pool %q is invalid: use 1 to 63 lowercase letters, digits and '-', starting with a letter or digit", name)
	}
	return nil
}

// checkPoolOwners refuses a tenant that names a node pool another tenant
// owns.
func checkPoolOwners(txn *memdb.Txn, t *Tenant) error {
	if len(t.Placement.NodePools) == 0 {
		return nil
	}
	it, err := txn.Get(tableTenants, indexID)
	if err != nil {
		return err
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		other := raw.(*Tenant)
		if other.ID == t.ID {
			continue
		}
		for _, p := range t.Placement.NodePools {
			if slices.Contains(other.Placement.NodePools, p) {
				return errdefs.New(errdefs.Conflict, "node pool %s is tenant %s's", p, other.ID)
			}
		}
	}
	return nil
}

func applyPutTenant(txn *memdb.Txn, index uint64, body []byte) error {
	var c tenantCmd
	if err := decodeBody(cmdPutTenant, body, &c); err != nil {
		return err
	}
	if c.Tenant == nil {
		return errdefs.New(errdefs.InvalidArgument, "put tenant: no tenant")
	}
	if err := validateTenant(c.Tenant); err != nil {
		return err
	}
	if err := checkPoolOwners(txn, c.Tenant); err != nil {
		return err
	}
	c.Tenant.ModifyIndex = index
	if err := txn.Insert(tableTenants, c.Tenant); err != nil {
		return fmt.Errorf("apply put tenant %s: %w", c.Tenant.ID, err)
	}
	return nil
}

// applyDeleteTenant removes a tenant and, in the same transaction, its
// API and SSH keys: a key must not outlive its tenant.
func applyDeleteTenant(txn *memdb.Txn, body []byte) error {
	if err := applyDelete(txn, tableTenants, "tenant", body); err != nil {
		return err
	}
	var c idCmd
	if err := decodeBody(cmdDeleteTenant, body, &c); err != nil {
		return err
	}
	if _, err := txn.DeleteAll(tableAPIKeys, indexTenant, c.ID); err != nil {
		return fmt.Errorf("apply delete tenant %s: its keys: %w", c.ID, err)
	}
	return deleteTenantSSHKeys(txn, c.ID)
}

// PutTenant creates or replaces a tenant record. A zero CreatedAt
// becomes now; on success t carries it and its ModifyIndex.
func (s *Store) PutTenant(ctx context.Context, t *Tenant) error {
	if t == nil {
		return errdefs.New(errdefs.InvalidArgument, "put tenant: no tenant")
	}
	c := t.Clone()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = time.Now()
	}
	c.CreatedAt = normalTime(c.CreatedAt)
	if err := validateTenant(c); err != nil {
		return err
	}
	idx, err := s.apply(ctx, cmdPutTenant, tenantCmd{Tenant: c})
	if err != nil {
		return err
	}
	t.CreatedAt, t.ModifyIndex = c.CreatedAt, idx
	return nil
}

// DeleteTenant removes a tenant record and its API keys; NotFound when
// absent. The caller checks it holds nothing else.
func (s *Store) DeleteTenant(ctx context.Context, id string) error {
	_, err := s.apply(ctx, cmdDeleteTenant, idCmd{ID: id})
	return err
}

// Tenant returns the tenant with the ID; NotFound when absent.
func (sn *Snapshot) Tenant(id string) (*Tenant, error) {
	raw, err := sn.db.Txn(false).First(tableTenants, indexID, id)
	if err != nil {
		return nil, fmt.Errorf("get tenant %s: %w", id, err)
	}
	if raw == nil {
		return nil, errdefs.New(errdefs.NotFound, "tenant %s not found", id)
	}
	return raw.(*Tenant).Clone(), nil
}

// TenantsChanged returns a channel that is closed once any tenant is put
// or deleted after sn was taken.
func (sn *Snapshot) TenantsChanged() <-chan struct{} {
	it, err := sn.db.Txn(false).Get(tableTenants, indexID)
	if err != nil {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return it.WatchCh()
}

// Tenants lists every tenant by ID.
func (sn *Snapshot) Tenants() ([]*Tenant, error) {
	it, err := sn.db.Txn(false).Get(tableTenants, indexID)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	var out []*Tenant
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Tenant).Clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
