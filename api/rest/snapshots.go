package rest

import "time"

// Snapshot modes (CreateSnapshotRequest.Mode).
const (
	// SnapshotModeMemory saves memory, processes and files: a sandbox
	// created from the snapshot continues where the source was.
	SnapshotModeMemory = "memory"
	// SnapshotModeFilesystem saves the root filesystem's changes only (no
	// memory, no processes): a sandbox created from the snapshot boots
	// cold on the source's image plus those changes, running the image's
	// command as a new sandbox would.
	SnapshotModeFilesystem = "filesystem"
)

// MaxForkCount bounds ForkRequest.Count.
const MaxForkCount = 64

// CreateSnapshotRequest snapshots a running sandbox, which keeps running.
type CreateSnapshotRequest struct {
	// Sandbox is the ID or name of the source sandbox.
	Sandbox string `json:"sandbox"`
	// Name is optional and unique among the tenant's snapshots.
	Name string `json:"name,omitempty"`
	// Mode is SnapshotModeMemory (default) or SnapshotModeFilesystem.
	Mode string `json:"mode,omitempty"`
}

// Snapshot is a saved sandbox as the API shows it. It is immutable and
// outlives its source sandbox.
type Snapshot struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Sandbox is the ID of the source sandbox (which may be gone).
	Sandbox string `json:"sandbox"`
	Image   string `json:"image,omitempty"`
	Mode    string `json:"mode"`
	// FilesystemImage, for mode filesystem, is the ID of the node-local
	// image that holds the snapshot (Image plus one layer of changes);
	// removing that image breaks the snapshot.
	FilesystemImage string  `json:"filesystem_image,omitempty"`
	CPUs            float64 `json:"cpus,omitempty"`
	MemoryMB        int64   `json:"memory_mb,omitempty"`
	DiskMB          int64   `json:"disk_mb,omitempty"`
	// SizeBytes is the size of the saved files; for mode filesystem, of
	// the compressed layer of changes.
	SizeBytes int64     `json:"size_bytes"`
	Node      string    `json:"node,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// SnapshotList is the body of GET /v1/snapshots, oldest first.
type SnapshotList struct {
	Snapshots []Snapshot `json:"snapshots"`
}

// ForkRequest forks a running sandbox into Count copies.
type ForkRequest struct {
	// Count is the number of copies, 1 to MaxForkCount; 0 means 1.
	Count int `json:"count,omitempty"`
	// SnapshotName, when set, keeps the checkpoint the copies were made
	// from as a snapshot of that name; otherwise it is removed.
	SnapshotName string `json:"snapshot_name,omitempty"`
}

// ForkResponse lists the running copies, in no particular order.
type ForkResponse struct {
	Sandboxes []Sandbox `json:"sandboxes"`
	// Snapshot is the ID of the kept snapshot when SnapshotName was set.
	Snapshot string `json:"snapshot,omitempty"`
}
