package node

import (
	"context"

	"github.com/denhq/den/internal/store"
)

// Records is the node's view of the replicated state: the records of the
// sandboxes, snapshots and pools it runs, and the writes that settle them.
// In `den up` it is the store itself (StoreRecords); on a `den agent` it
// is the node link to the servers (internal/noderpc), which lets a node
// touch only its own sandboxes' records.
type Records interface {
	// Snapshot is a consistent read view (on the agent: reads go to the
	// server one by one, each current when it is answered).
	Snapshot() RecordReader
	// CreateSandbox records a sandbox the node has started (StartNew);
	// on an agent the server accepts only the record it asked for.
	CreateSandbox(ctx context.Context, sb *store.Sandbox) error
	UpdateSandbox(ctx context.Context, sb *store.Sandbox) error
	DeleteSandbox(ctx context.Context, id string) error
	CreateSandboxSnapshot(ctx context.Context, snap *store.SandboxSnapshot) error
	DeleteSandboxSnapshot(ctx context.Context, id string) error
}

// RecordReader reads records; errors are the store's (NotFound, ...).
type RecordReader interface {
	Sandbox(id string) (*store.Sandbox, error)
	Sandboxes(f store.SandboxFilter) ([]*store.Sandbox, string, error)
	SandboxSnapshot(id string) (*store.SandboxSnapshot, error)
	SandboxSnapshotByName(tenant, name string) (*store.SandboxSnapshot, error)
	SandboxSnapshots(tenant string) ([]*store.SandboxSnapshot, error)
	Pools(tenant string) ([]*store.Pool, error)
	// PoolsChanged is closed when the pools change after this view.
	PoolsChanged() <-chan struct{}
}

// StoreRecords is Records over the replicated store (one process).
func StoreRecords(st *store.Store) Records { return storeRecords{st} }

type storeRecords struct{ *store.Store }

func (r storeRecords) Snapshot() RecordReader { return r.Store.Snapshot() }
