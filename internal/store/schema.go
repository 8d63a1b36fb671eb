package store

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/hashicorp/go-memdb"
)

// Table and index names.
const (
	tableSandboxes = "sandboxes"
	tableAPIKeys   = "api_keys"
	tableSnapshots = "snapshots"
	tablePools     = "pools"
	tableTenants   = "tenants"

	indexID            = "id"
	indexName          = "name"           // (Tenant, Name), non-unique: terminal sandboxes keep theirs
	indexCreated       = "created"        // (CreatedAt, ID): list order
	indexTenantCreated = "tenant_created" // (Tenant, CreatedAt, ID): list order within a tenant
	indexHash          = "hash"
	indexTenant        = "tenant"
	indexExpiry        = "expiry"     // (ExpiresAt, ID) of running sandboxes with a timeout: the reaper's timeouts
	indexIdleTimed     = "idle_timed" // ID of running sandboxes with an idle timeout: the reaper's idle checks
)

// schema is the in-memory database layout.
func schema() *memdb.DBSchema {
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableSandboxes: {
			Name: tableSandboxes,
			Indexes: map[string]*memdb.IndexSchema{
				indexID:            {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
				indexName:          {Name: indexName, AllowMissing: true, Indexer: tenantNameIndexer{}},
				indexCreated:       {Name: indexCreated, Unique: true, Indexer: createdIndexer{}},
				indexTenantCreated: {Name: indexTenantCreated, Unique: true, Indexer: createdIndexer{tenant: true}},
				indexNode:          sandboxNodeIndex(),
				indexExpiry:        {Name: indexExpiry, Unique: true, AllowMissing: true, Indexer: expiryIndexer{}},
				indexIdleTimed:     {Name: indexIdleTimed, Unique: true, AllowMissing: true, Indexer: idleTimedIndexer{}},
			},
		},
		tableSnapshots: {
			Name: tableSnapshots,
			Indexes: map[string]*memdb.IndexSchema{
				indexID:      {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
				indexName:    {Name: indexName, Unique: true, AllowMissing: true, Indexer: tenantNameIndexer{}},
				indexCreated: {Name: indexCreated, Unique: true, Indexer: createdIndexer{}},
			},
		},
		tablePools: {
			Name: tablePools,
			Indexes: map[string]*memdb.IndexSchema{
				indexID:      {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
				indexName:    {Name: indexName, Unique: true, AllowMissing: true, Indexer: tenantNameIndexer{}},
				indexCreated: {Name: indexCreated, Unique: true, Indexer: createdIndexer{}},
			},
		},
		tableTenants: {
			Name: tableTenants,
			Indexes: map[string]*memdb.IndexSchema{
				indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
			},
		},
		tableSSHKeys:    sshKeysTable(),
		tableJoinTokens: joinTokensTable(),
		tableNodes:      nodesTable(),
		tableClusterCA:  clusterCATable(),
		tableAPIKeys: {
			Name: tableAPIKeys,
			Indexes: map[string]*memdb.IndexSchema{
				indexID:     {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
				indexHash:   {Name: indexHash, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Hash"}},
				indexTenant: {Name: indexTenant, AllowMissing: true, Indexer: &memdb.StringFieldIndex{Field: "Tenant"}},
			},
		},
	}}
}

// expiryIndexer orders the running sandboxes that have a timeout by
// (ExpiresAt, ID); the others are left out. Iterated without args only.
type expiryIndexer struct{}

func (expiryIndexer) FromObject(obj any) (bool, []byte, error) {
	sb, ok := obj.(*Sandbox)
	if !ok {
		return false, nil, fmt.Errorf("expiry index: unexpected %T", obj)
	}
	if sb.State != StateRunning || sb.ExpiresAt.IsZero() {
		return false, nil, nil
	}
	return true, append(appendTime(nil, sb.ExpiresAt), sb.ID...), nil
}

func (expiryIndexer) FromArgs(args ...any) ([]byte, error) {
	return nil, fmt.Errorf("expiry index: iterate it without args")
}

// idleTimedIndexer indexes the running sandboxes that have an idle
// timeout by ID; the others are left out. Iterated without args only.
type idleTimedIndexer struct{}

func (idleTimedIndexer) FromObject(obj any) (bool, []byte, error) {
	sb, ok := obj.(*Sandbox)
	if !ok {
		return false, nil, fmt.Errorf("idle-timed index: unexpected %T", obj)
	}
	if sb.State != StateRunning || sb.IdleTimeoutSec <= 0 {
		return false, nil, nil
	}
	return true, []byte(sb.ID + "\x00"), nil
}

func (idleTimedIndexer) FromArgs(args ...any) ([]byte, error) {
	return nil, fmt.Errorf("idle-timed index: iterate it without args")
}

// tenantNameIndexer indexes sandboxes by (Tenant, Name); unnamed sandboxes
// are left out. Args: tenant, name string.
type tenantNameIndexer struct{}

func (tenantNameIndexer) FromObject(obj any) (bool, []byte, error) {
	var tenant, name string
	switch o := obj.(type) {
	case *Sandbox:
		tenant, name = o.Tenant, o.Name
	case *SandboxSnapshot:
		tenant, name = o.Tenant, o.Name
	case *Pool:
		tenant, name = o.Tenant, o.Name
	default:
		return false, nil, fmt.Errorf("name index: unexpected %T", obj)
	}
	if name == "" {
		return false, nil, nil
	}
	return true, tenantNameKey(tenant, name), nil
}

func (tenantNameIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 2 {
		return nil, fmt.Errorf("name index: want 2 args, got %d", len(args))
	}
	tenant, ok1 := args[0].(string)
	name, ok2 := args[1].(string)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("name index: want string args")
	}
	return tenantNameKey(tenant, name), nil
}

func tenantNameKey(tenant, name string) []byte {
	return []byte(tenant + "\x00" + name + "\x00")
}

// createdIndexer orders sandboxes by (CreatedAt, ID), optionally prefixed by
// Tenant. Keys sort bytewise in that order. Args: [tenant string,]
// createdAt time.Time, id string; trailing args may be omitted to seek to
// the start of a range.
type createdIndexer struct{ tenant bool }

func (ix createdIndexer) FromObject(obj any) (bool, []byte, error) {
	switch o := obj.(type) {
	case *Sandbox:
		return true, ix.key(o.Tenant, o.CreatedAt, o.ID), nil
	case *SandboxSnapshot:
		return true, ix.key(o.Tenant, o.CreatedAt, o.ID), nil
	case *Pool:
		return true, ix.key(o.Tenant, o.CreatedAt, o.ID), nil
	}
	return false, nil, fmt.Errorf("created index: unexpected %T", obj)
}

func (ix createdIndexer) FromArgs(args ...any) ([]byte, error) {
	var key []byte
	if ix.tenant {
		if len(args) == 0 {
			return nil, fmt.Errorf("created index: missing tenant")
		}
		tenant, ok := args[0].(string)
		if !ok {
			return nil, fmt.Errorf("created index: tenant must be a string")
		}
		key = tenantPrefix(tenant)
		args = args[1:]
	}
	if len(args) == 0 {
		return key, nil
	}
	t, ok := args[0].(time.Time)
	if !ok {
		return nil, fmt.Errorf("created index: createdAt must be a time.Time")
	}
	key = appendTime(key, t)
	if len(args) > 1 {
		id, ok := args[1].(string)
		if !ok {
			return nil, fmt.Errorf("created index: id must be a string")
		}
		key = append(key, id...)
	}
	return key, nil
}

func (ix createdIndexer) key(tenant string, t time.Time, id string) []byte {
	var key []byte
	if ix.tenant {
		key = tenantPrefix(tenant)
	}
	return append(appendTime(key, t), id...)
}

func tenantPrefix(tenant string) []byte { return []byte(tenant + "\x00") }

// appendTime appends t as 12 bytes that sort like the times: seconds with the
// sign bit flipped, then nanoseconds, both big-endian.
func appendTime(b []byte, t time.Time) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix())^(1<<63))
	return binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
}
