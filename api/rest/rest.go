// Package rest holds the wire types of den's control-plane REST API (/v1).
// The server and the SDKs share them; api/openapi.yaml documents the same
// shapes. Authentication: "Authorization: Bearer <key>" or "X-API-Key: <key>".
//
// Routes:
//
//	POST   /v1/sandboxes                    CreateSandboxRequest -> 201 Sandbox
//	GET    /v1/sandboxes                    ?state=&metadata=k=v&limit=&page_token= -> SandboxList
//	GET    /v1/sandboxes/{id}               -> Sandbox ({id} is an ID or a name)
//	DELETE /v1/sandboxes/{id}               -> 204
//	POST   /v1/sandboxes/{id}/timeout       SetTimeoutRequest -> Sandbox
//	POST   /v1/sandboxes/{id}/suspend       -> Sandbox (suspended)
//	POST   /v1/sandboxes/{id}/resume        -> Sandbox (running)
//	ANY    /v1/sandboxes/{id}/envd/{path}   proxied to the sandbox's guest agent
//	                                        (envd protocol: Connect RPC, /files, /health)
//	GET    /v1/images                       -> ImageList
//	POST   /v1/images?name=N                body: docker-archive or OCI-layout tar -> 201 Image
//	GET    /v1/images/{ref}                 -> ImageDetails
//	DELETE /v1/images/{ref}                 -> 204
//	POST   /v1/images/{ref}/tag             TagImageRequest -> 201 Image
//	GET    /v1/images/{ref}/export          ?format=docker-archive|oci -> tar
//	POST   /v1/images/pull                  PullImageRequest -> NDJSON ImageEvent stream
//	POST   /v1/images/push                  PushImageRequest -> NDJSON ImageEvent stream
//	POST   /v1/images/build                 ?t=&dockerfile=&target=&build_arg=K=V&no_cache=&pull=
//	                                        body: build context tar (may be gzipped)
//	                                        -> NDJSON ImageEvent stream
//	POST   /v1/images/prune                 -> PruneImagesResult
//	GET    /v1/info                         -> Info
//
// Errors are Error with the HTTP status of the error kind. A {ref} holding
// a slash (registry names) is sent with the slash escaped as %2F.
//
// The NDJSON streams (Content-Type application/x-ndjson) answer 200 once
// their first line is ready; an error found before that is a plain Error
// with its status. The last line of a stream is its result or an Error in
// ImageEvent.Error.
package rest

import "time"

// Sandbox states.
const (
	StatePending    = "pending"
	StateStarting   = "starting"
	StateRunning    = "running"
	StateSuspending = "suspending"
	StateSuspended  = "suspended"
	StateResuming   = "resuming"
	StateStopping   = "stopping"
	StateTerminated = "terminated"
	StateFailed     = "failed"
)

// Actions of a sandbox's timeout and idle timeout.
const (
	// ActionKill deletes the sandbox (the default).
	ActionKill = "kill"
	// ActionSuspend suspends it; its timers stop until it resumes.
	ActionSuspend = "suspend"
)

// Defaults and bounds of sandbox sizes.
const (
	DefaultImage          = "base"
	DefaultCPUs           = 1.0
	DefaultMemoryMB       = 512
	DefaultDiskMB         = 2048
	DefaultTimeoutSeconds = 300
	MaxCPUs               = 64
	MinMemoryMB           = 32
	MaxMemoryMB           = 256 * 1024
	MinDiskMB             = 16
	MaxDiskMB             = 4 * 1024 * 1024
	MaxTimeoutSeconds     = 30 * 24 * 3600
)

// GuestPathPrefix is the path under a sandbox where the guest protocol is proxied.
const GuestPathPrefix = "/envd"

// Error is the body of every error response.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// CreateSandboxRequest creates a sandbox. Zero fields take defaults.
type CreateSandboxRequest struct {
	Image    string            `json:"image,omitempty"`
	Name     string            `json:"name,omitempty"`
	CPUs     float64           `json:"cpus,omitempty"`
	MemoryMB int64             `json:"memory_mb,omitempty"`
	DiskMB   int64             `json:"disk_mb,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// Timeout in seconds of running life, after which TimeoutAction
	// applies; nil means the default (300), 0 means never.
	Timeout *int64 `json:"timeout,omitempty"`
	// TimeoutAction is ActionKill (default) or ActionSuspend.
	TimeoutAction string `json:"timeout_action,omitempty"`
	// IdleTimeout in seconds without activity (see docs/api.md), after
	// which IdleAction applies; 0 (default) means never.
	IdleTimeout int64 `json:"idle_timeout,omitempty"`
	// IdleAction is ActionKill (default) or ActionSuspend.
	IdleAction string `json:"idle_action,omitempty"`
	// User is the default user of the sandbox's processes and file
	// operations (requests that name none); empty means the image's user.
	// The image must have it.
	User string `json:"user,omitempty"`
	// Snapshot, when set, is the ID or name of a snapshot to start the
	// sandbox from: its processes continue from the saved point. Image,
	// CPUs, MemoryMB, DiskMB, Env and User are the snapshot's and must be
	// left zero.
	Snapshot string `json:"snapshot,omitempty"`
	// Pool, when set, is the ID or name of a warm pool to claim a spare
	// from: image, snapshot and sizes are the pool's and must be left
	// zero. A create that names a pool's image (or snapshot) and sizes
	// claims from it too, without naming it.
	Pool string `json:"pool,omitempty"`
	// Runtime is the runtime to run the sandbox on ("gvisor", "qemu"; see
	// GET /v1/info); empty means the node's default. A sandbox from a
	// memory snapshot runs on the snapshot's runtime.
	Runtime string `json:"runtime,omitempty"`
	// Network is the sandbox's egress policy; omitted: the internet on,
	// no rules.
	Network *NetworkPolicy `json:"network,omitempty"`
	// PublicPorts are ports whose URLs need no token or signature (0:
	// every port); omitted: every port is private.
	PublicPorts []int `json:"public_ports,omitempty"`
	// CapacityWait is how many seconds the create may wait, parked, for a
	// node with room in a cluster whose nodes are full (first come, first
	// placed); 0 answers resource_exhausted at once. At most
	// MaxCapacityWaitSeconds. A single node (den up) never waits.
	CapacityWait int64 `json:"capacity_wait,omitempty"`
}

// MaxCapacityWaitSeconds bounds CreateSandboxRequest.CapacityWait.
const MaxCapacityWaitSeconds = 600

// ApplyDefaults fills the zero fields of r with the documented defaults.
func (r *CreateSandboxRequest) ApplyDefaults() {
	if r.Image == "" {
		r.Image = DefaultImage
	}
	if r.CPUs == 0 {
		r.CPUs = DefaultCPUs
	}
	if r.MemoryMB == 0 {
		r.MemoryMB = DefaultMemoryMB
	}
	if r.DiskMB == 0 {
		r.DiskMB = DefaultDiskMB
	}
	if r.Timeout == nil {
		t := int64(DefaultTimeoutSeconds)
		r.Timeout = &t
	}
	if r.TimeoutAction == "" {
		r.TimeoutAction = ActionKill
	}
	if r.IdleAction == "" {
		r.IdleAction = ActionKill
	}
}

// Sandbox is a sandbox as the API shows it.
type Sandbox struct {
	ID       string            `json:"id"`
	Name     string            `json:"name,omitempty"`
	Image    string            `json:"image"`
	State    string            `json:"state"`
	Reason   string            `json:"reason,omitempty"`
	Runtime  string            `json:"runtime"`
	Node     string            `json:"node"`
	CPUs     float64           `json:"cpus"`
	MemoryMB int64             `json:"memory_mb"`
	DiskMB   int64             `json:"disk_mb"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// Timeout in seconds of running life; 0 means none.
	Timeout int64 `json:"timeout"`
	// TimeoutAction is set when Timeout is: ActionKill or ActionSuspend.
	TimeoutAction string `json:"timeout_action,omitempty"`
	// IdleTimeout in seconds; 0 means none. IdleAction is set with it.
	IdleTimeout int64      `json:"idle_timeout,omitempty"`
	IdleAction  string     `json:"idle_action,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	// ExpiresAt is when the timeout passes; set while a timeout runs
	// (never while suspended: see TimeoutLeft).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// LastActiveAt and IdleExpiresAt are set for a running sandbox with
	// an idle timeout: its last activity and when IdleAction applies if
	// none comes (both "now" while a stream is open).
	LastActiveAt  *time.Time `json:"last_active_at,omitempty"`
	IdleExpiresAt *time.Time `json:"idle_expires_at,omitempty"`
	// SuspendedAt is set while the sandbox is suspended.
	SuspendedAt *time.Time `json:"suspended_at,omitempty"`
	// TimeoutLeft is, while suspended with a timeout, the seconds of life
	// it will have when it resumes.
	TimeoutLeft int64 `json:"timeout_left,omitempty"`
	// SnapshotBytes is, while suspended, the size of its saved state.
	SnapshotBytes int64 `json:"snapshot_bytes,omitempty"`
	// FromSnapshot is the snapshot the sandbox was started from, if any.
	FromSnapshot string `json:"from_snapshot,omitempty"`
	// Network is its egress policy; absent for a sandbox without a
	// network.
	Network *NetworkPolicy `json:"network,omitempty"`
	// PublicPorts are the ports whose URLs need no token (0: every port).
	PublicPorts []int `json:"public_ports,omitempty"`
}

// SandboxList is one page of sandboxes. NextPageToken is empty on the last page.
type SandboxList struct {
	Sandboxes     []Sandbox `json:"sandboxes"`
	NextPageToken string    `json:"next_page_token,omitempty"`
}

// SetTimeoutRequest sets a sandbox's timeout, counted from now; 0 removes it.
type SetTimeoutRequest struct {
	Timeout int64 `json:"timeout"`
}

// Info describes the server.
type Info struct {
	Version string `json:"version"`
	// Runtimes are the runtime names a create may ask for, the default
	// first; RuntimeDetails describes each.
	Runtimes       []string      `json:"runtimes"`
	RuntimeDetails []RuntimeInfo `json:"runtime_details"`
	Node           string        `json:"node"`
}

// RuntimeInfo describes a runtime of the node.
type RuntimeInfo struct {
	Name string `json:"name"`
	// Isolation is "user-space-kernel" (gVisor) or "vm" (QEMU).
	Isolation string `json:"isolation"`
	// Accel is the acceleration of a VM runtime: "kvm", or "tcg"
	// (software emulation, many times slower).
	Accel string `json:"accel,omitempty"`
	// Default is true for the runtime a create that names none gets.
	Default bool `json:"default"`
	// Suspend is true when its sandboxes can be suspended and snapshotted.
	Suspend bool `json:"suspend"`
	// Pool is true when it keeps warm pools.
	Pool bool `json:"pool"`
}
