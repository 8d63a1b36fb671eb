package store

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/denhq/den/internal/errdefs"
)

// Snapshot is a consistent, point-in-time view of the state. Taking one is
// O(1); it never sees writes made after it was taken and is safe for
// concurrent use. Every object it returns is a fresh copy owned by the
// caller.
type Snapshot struct {
	db *memdb.MemDB
}

// Snapshot returns a view of the state as of the last applied write.
func (s *Store) Snapshot() *Snapshot {
	return &Snapshot{db: s.fsm.db.Snapshot()}
}

// Sandbox returns the sandbox with the ID; NotFound when absent.
func (sn *Snapshot) Sandbox(id string) (*Sandbox, error) {
	raw, err := sn.db.Txn(false).First(tableSandboxes, indexID, id)
	if err != nil {
		return nil, fmt.Errorf("get sandbox %s: %w", id, err)
	}
	if raw == nil {
		return nil, errdefs.New(errdefs.NotFound, "sandbox %s not found", id)
	}
	return raw.(*Sandbox).Clone(), nil
}

// SandboxByName returns the tenant's live sandbox with the name or, when
// none is live, the most recently created terminal one; NotFound when the
// tenant never had one.
func (sn *Snapshot) SandboxByName(tenant, name string) (*Sandbox, error) {
	it, err := sn.db.Txn(false).Get(tableSandboxes, indexName, tenant, name)
	if err != nil {
		return nil, fmt.Errorf("get sandbox by name: %w", err)
	}
	var best *Sandbox
	for raw := it.Next(); raw != nil; raw = it.Next() {
		sb := raw.(*Sandbox)
		if !IsTerminal(sb.State) {
			return sb.Clone(), nil
		}
		if best == nil || createdBefore(best, sb) {
			best = sb
		}
	}
	if best == nil {
		return nil, errdefs.New(errdefs.NotFound, "sandbox named %q not found", name)
	}
	return best.Clone(), nil
}

func createdBefore(a, b *Sandbox) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.Before(b.CreatedAt)
	}
	return a.ID < b.ID
}

// SandboxFilter selects sandboxes. Zero fields match everything.
type SandboxFilter struct {
	Tenant   string
	States   []string          // any of
	Metadata map[string]string // all of
	Node     string
	// Limit caps the page size; 0 means no limit.
	Limit int
	// PageToken continues a listing from the token a previous call returned.
	PageToken string
}

func (f SandboxFilter) match(sb *Sandbox) bool {
	if f.Tenant != "" && sb.Tenant != f.Tenant {
		return false
	}
	if f.Node != "" && sb.Node != f.Node {
		return false
	}
	if len(f.States) > 0 && !containsString(f.States, sb.State) {
		return false
	}
	for k, v := range f.Metadata {
		if got, ok := sb.Metadata[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (f SandboxFilter) validate() error {
	if f.Limit < 0 {
		return errdefs.New(errdefs.InvalidArgument, "limit must not be negative, got %d", f.Limit)
	}
	for _, st := range f.States {
		if !ValidState(st) {
			return errdefs.New(errdefs.InvalidArgument, "unknown state %q", st)
		}
	}
	return nil
}

// Sandboxes lists the sandboxes matching f, ordered by (CreatedAt, ID).
// When more match than f.Limit, it returns the first page and a token for
// the next; the token is "" on the last page. A listing with tokens returns
// every record that exists throughout it exactly once. InvalidArgument on a
// bad filter or token.
func (sn *Snapshot) Sandboxes(f SandboxFilter) ([]*Sandbox, string, error) {
	if err := f.validate(); err != nil {
		return nil, "", fmt.Errorf("list sandboxes: %w", err)
	}
	after, err := decodePageToken(f.PageToken)
	if err != nil {
		return nil, "", fmt.Errorf("list sandboxes: %w", err)
	}
	it, err := sn.seek(f.Tenant, after)
	if err != nil {
		return nil, "", fmt.Errorf("list sandboxes: %w", err)
	}
	var out []*Sandbox
	for raw := it.Next(); raw != nil; raw = it.Next() {
		sb := raw.(*Sandbox)
		if f.Tenant != "" && sb.Tenant != f.Tenant {
			break // left the tenant's range of the index
		}
		if (after != nil && !after.before(sb)) || !f.match(sb) {
			continue
		}
		if f.Limit > 0 && len(out) == f.Limit {
			return out, encodePageToken(out[len(out)-1]), nil
		}
		out = append(out, sb.Clone())
	}
	return out, "", nil
}

// EachExpired calls fn, in order of expiry, for every running sandbox
// whose timeout has passed at now (a non-zero ExpiresAt at or before
// now), until it returns false. It reads an index of the running
// sandboxes' expiries, so a pass costs the number of expired sandboxes,
// not the number of sandboxes. fn gets the snapshot's own record: it must
// not change it or keep it.
func (sn *Snapshot) EachExpired(now time.Time, fn func(*Sandbox) bool) error {
	it, err := sn.db.Txn(false).Get(tableSandboxes, indexExpiry)
	if err != nil {
		return fmt.Errorf("scan expired sandboxes: %w", err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		sb := raw.(*Sandbox)
		if sb.ExpiresAt.After(now) || !fn(sb) {
			return nil
		}
	}
	return nil
}

// EachIdleTimed calls fn for every running sandbox with an idle timeout,
// in no particular order, until it returns false. fn gets the snapshot's
// own record: it must not change it or keep it.
func (sn *Snapshot) EachIdleTimed(fn func(*Sandbox) bool) error {
	it, err := sn.db.Txn(false).Get(tableSandboxes, indexIdleTimed)
	if err != nil {
		return fmt.Errorf("scan idle-timed sandboxes: %w", err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if !fn(raw.(*Sandbox)) {
			return nil
		}
	}
	return nil
}

// SandboxRunning reports whether sandbox id exists and is running (a
// lookup without a copy, for sweeps over many IDs).
func (sn *Snapshot) SandboxRunning(id string) bool {
	raw, err := sn.db.Txn(false).First(tableSandboxes, indexID, id)
	return err == nil && raw != nil && raw.(*Sandbox).State == StateRunning
}

// seek positions an iterator over the list order at the first sandbox at or
// after the cursor, within the tenant when one is given.
func (sn *Snapshot) seek(tenant string, after *pageCursor) (memdb.ResultIterator, error) {
	index, args := indexCreated, []any{}
	if tenant != "" {
		index, args = indexTenantCreated, []any{tenant}
	}
	if after != nil {
		args = append(args, after.CreatedAt, after.ID)
	}
	return sn.db.Txn(false).LowerBound(tableSandboxes, index, args...)
}

// pageCursor is the position after the last returned sandbox.
type pageCursor struct {
	CreatedAt time.Time `json:"t"`
	ID        string    `json:"id"`
}

// before reports whether the cursor sorts strictly before sb.
func (c *pageCursor) before(sb *Sandbox) bool {
	if !c.CreatedAt.Equal(sb.CreatedAt) {
		return c.CreatedAt.Before(sb.CreatedAt)
	}
	return c.ID < sb.ID
}

func encodePageToken(last *Sandbox) string {
	b, _ := json.Marshal(pageCursor{CreatedAt: last.CreatedAt, ID: last.ID}) // cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(tok string) (*pageCursor, error) {
	if tok == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	var c pageCursor
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.ID == "" {
		return nil, errdefs.New(errdefs.InvalidArgument, "invalid page token")
	}
	return &c, nil
}

// APIKeyByHash returns the key whose secret hashes to hash; NotFound when
// none does.
func (sn *Snapshot) APIKeyByHash(hash string) (*APIKey, error) {
	raw, err := sn.db.Txn(false).First(tableAPIKeys, indexHash, hash)
	if err != nil {
		return nil, fmt.Errorf("get api key by hash: %w", err)
	}
	if raw == nil {
		return nil, errdefs.New(errdefs.NotFound, "api key not found")
	}
	return raw.(*APIKey).Clone(), nil
}

// APIKeys returns the tenant's keys ordered by ID; every key when tenant is
// empty.
func (sn *Snapshot) APIKeys(tenant string) []*APIKey {
	txn := sn.db.Txn(false)
	var it memdb.ResultIterator
	var err error
	if tenant == "" {
		it, err = txn.Get(tableAPIKeys, indexID)
	} else {
		it, err = txn.Get(tableAPIKeys, indexTenant, tenant)
	}
	if err != nil {
		return nil // only on a schema bug: the indexes and args are fixed
	}
	var out []*APIKey
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*APIKey).Clone())
	}
	return out
}

// APIKey returns the key with the ID; NotFound when absent.
func (sn *Snapshot) APIKey(id string) (*APIKey, error) {
	raw, err := sn.db.Txn(false).First(tableAPIKeys, indexID, id)
	if err != nil {
		return nil, fmt.Errorf("get api key %s: %w", id, err)
	}
	if raw == nil {
		return nil, errdefs.New(errdefs.NotFound, "api key %s not found", id)
	}
	return raw.(*APIKey).Clone(), nil
}
