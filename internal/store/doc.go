// Package store is den's replicated state: the single source of truth for
// desired state (sandboxes, API keys).
//
// Every change is a raft log entry (hashicorp/raft, persisted in a bolt file
// by raft-boltdb) applied by a deterministic FSM to a copy-on-write
// in-memory database (go-memdb). Readers take O(1) point-in-time snapshots
// with [Store.Snapshot] and never block writers.
//
// Ownership: objects handed to a write method are encoded before the call
// returns and may be reused by the caller; objects returned by reads are
// fresh copies that the caller owns. Nothing the caller holds aliases the
// in-memory database, whose objects are never mutated after insertion.
//
// Determinism: the FSM never reads clocks or randomness. Timestamps are
// chosen by the writer (for example CreatedAt in [Store.CreateSandbox]) and
// travel inside the command.
package store
