package rest

import "time"

// Kinds of snapshot directories in SnapshotUsage.ByKind and PrunedSnapshot.
const (
	// SnapshotKindGeneration is a sealed suspend snapshot of a sandbox.
	SnapshotKindGeneration = "generation"
	// SnapshotKindPending is an unsealed suspend snapshot: being written,
	// or left by a failed or interrupted suspend.
	SnapshotKindPending = "pending"
	// SnapshotKindObject is a snapshot object (den snapshot create, fork).
	SnapshotKindObject = "object"
	// SnapshotKindObjectPending is an unsealed snapshot object.
	SnapshotKindObjectPending = "object-pending"
	// SnapshotKindOther is a file or directory den does not write.
	SnapshotKindOther = "other"
)

// SnapshotUsage is the body of GET /v1/snapshots/usage: the disk the
// caller's snapshots take on the node, and the node's totals.
type SnapshotUsage struct {
	Node string `json:"node"`
	// Sandboxes are the caller's sandboxes that have snapshot files, by ID.
	Sandboxes []SandboxSnapshotUsage `json:"sandboxes"`
	// Objects are the caller's snapshot objects that have files, by ID.
	Objects []SnapshotObjectUsage `json:"objects"`
	// TenantBytes is the sum of Sandboxes and Objects.
	TenantBytes int64 `json:"tenant_bytes"`
	// NodeBytes and NodeFiles count everything in the node's snapshot
	// directory: every tenant's, and what no record names.
	NodeBytes int64 `json:"node_bytes"`
	NodeFiles int   `json:"node_files"`
	// OrphanBytes is what no record names (an admin's prune removes it,
	// and so does the next start of den).
	OrphanBytes int64 `json:"orphan_bytes"`
	// ByKind sums the node's directories by kind (SnapshotKind*).
	ByKind map[string]SnapshotUsageTotal `json:"by_kind"`
}

// SnapshotUsageTotal sums directories of one kind.
type SnapshotUsageTotal struct {
	Dirs  int   `json:"dirs"`
	Bytes int64 `json:"bytes"`
	Files int   `json:"files"`
}

// SandboxSnapshotUsage is the disk one sandbox's suspend snapshots take.
type SandboxSnapshotUsage struct {
	ID    string `json:"id"`
	Name  string `json:"name,omitempty"`
	State string `json:"state"`
	// PinnedGeneration is the generation the record names (0: none): the
	// one a resume restores, which prune never removes.
	PinnedGeneration uint64 `json:"pinned_generation,omitempty"`
	// Generations counts sealed generations on disk, Pending unsealed ones.
	Generations int   `json:"generations"`
	Pending     int   `json:"pending"`
	Bytes       int64 `json:"bytes"`
	Files       int   `json:"files"`
}

// SnapshotObjectUsage is the disk one snapshot object takes.
type SnapshotObjectUsage struct {
	ID        string    `json:"id"`
	Name      string    `json:"name,omitempty"`
	Bytes     int64     `json:"bytes"`
	Files     int       `json:"files"`
	CreatedAt time.Time `json:"created_at"`
}

// PruneSnapshotsRequest is the body of POST /v1/snapshots/prune. Without
// Objects, a prune removes only what nothing references: older and
// unsealed generations of the caller's running and suspended sandboxes
// and, for an admin key, directories no record names. Snapshot objects
// are user data and go only when asked for.
type PruneSnapshotsRequest struct {
	// DryRun reports what would be removed and removes nothing.
	DryRun bool `json:"dry_run,omitempty"`
	// Objects also deletes the caller's snapshot objects created more
	// than OlderThanSec seconds ago (required with Objects; 0 is every
	// one), unnamed ones only unless IncludeNamed.
	Objects      bool   `json:"objects,omitempty"`
	OlderThanSec *int64 `json:"older_than_sec,omitempty"`
	IncludeNamed bool   `json:"include_named,omitempty"`
}

// PruneSnapshotsResult is the answer of POST /v1/snapshots/prune.
type PruneSnapshotsResult struct {
	DryRun bool `json:"dry_run"`
	// Removed lists what was removed (or, in a dry run, would be).
	Removed []PrunedSnapshot `json:"removed"`
	// Bytes is the sum of Removed: freed, or to be freed.
	Bytes int64 `json:"bytes"`
}

// PrunedSnapshot is one directory a prune removed.
type PrunedSnapshot struct {
	// Kind is a SnapshotKind*.
	Kind string `json:"kind"`
	// Sandbox or Snapshot is its owner's ID (empty for a stray file).
	Sandbox    string `json:"sandbox,omitempty"`
	Snapshot   string `json:"snapshot,omitempty"`
	Generation uint64 `json:"generation,omitempty"`
	Bytes      int64  `json:"bytes"`
	Files      int    `json:"files"`
	// Reason says why nothing needed it, or that it was asked for.
	Reason string `json:"reason"`
}
