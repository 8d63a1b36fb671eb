package rest

import "time"

// MaxPoolSize bounds CreatePoolRequest.Size and UpdatePoolRequest.Size.
const MaxPoolSize = 256

// CreatePoolRequest declares a warm pool: Size started, never-used
// sandboxes of one shape kept ready, so that a create of that shape (or
// one naming the pool) claims one instead of booting. Image and Snapshot
// are exclusive; a snapshot pool takes its image and size from the
// snapshot (leave CPUs, MemoryMB, DiskMB and User zero). Image pools take
// the create defaults for the sizes left zero.
type CreatePoolRequest struct {
	// Name is optional and unique among the tenant's pools.
	Name     string  `json:"name,omitempty"`
	Image    string  `json:"image,omitempty"`
	Snapshot string  `json:"snapshot,omitempty"`
	Size     int     `json:"size"`
	CPUs     float64 `json:"cpus,omitempty"`
	MemoryMB int64   `json:"memory_mb,omitempty"`
	DiskMB   int64   `json:"disk_mb,omitempty"`
	User     string  `json:"user,omitempty"`
	// Runtime runs the spares ("gvisor", "qemu"); empty: the node's
	// default. A snapshot pool runs on its snapshot's runtime.
	Runtime string `json:"runtime,omitempty"`
}

// UpdatePoolRequest resizes a pool.
type UpdatePoolRequest struct {
	Size *int `json:"size"`
}

// Pool is a warm pool as the API shows it.
type Pool struct {
	ID       string `json:"id"`
	Name     string `json:"name,omitempty"`
	Image    string `json:"image,omitempty"`
	Snapshot string `json:"snapshot,omitempty"`
	Size     int    `json:"size"`
	// Ready is the number of spares ready to be claimed now.
	Ready int `json:"ready"`
	// Waiting says why the pool is not full, when it is not and cannot
	// fill now (a boot failed, the host lacks memory, the image is gone).
	Waiting  string  `json:"waiting,omitempty"`
	CPUs     float64 `json:"cpus"`
	MemoryMB int64   `json:"memory_mb"`
	DiskMB   int64   `json:"disk_mb"`
	User     string  `json:"user,omitempty"`
	// Runtime runs the spares.
	Runtime   string    `json:"runtime"`
	CreatedAt time.Time `json:"created_at"`
}

// PoolList is the body of GET /v1/pools, oldest first.
type PoolList struct {
	Pools []Pool `json:"pools"`
}
