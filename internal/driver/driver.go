// Package driver is the runtime contract of den: what a sandbox runtime
// (gVisor, a microVM, a simulator) must provide so the node agent can run
// sandboxes on it. Required lifecycle methods live on Driver; optional
// abilities are separate interfaces discovered by type assertion and
// advertised in Capabilities. No method may answer "not supported".
//
// Concurrency: every method may be called concurrently for different sandbox
// IDs. Calls for the same ID are serialised by the caller (the node agent).
package driver

import (
	"context"
	"encoding/json"
	"net"
	"time"

	"github.com/denhq/den/internal/sandboxnet"
)

// Capabilities says what a driver can do. It is static for a driver instance.
type Capabilities struct {
	// Name is the runtime name stored on sandboxes ("gvisor", "qemu", "fake").
	Name string `json:"name"`
	// Isolation describes the boundary: "user-space-kernel", "vm" or "none".
	Isolation string `json:"isolation"`
	// Stats is true when the driver implements StatsReader.
	Stats bool `json:"stats"`
	// Wait is true when the driver implements Waiter.
	Wait bool `json:"wait"`
	// List is true when the driver implements Lister.
	List bool `json:"list"`
	// Suspend is true when the driver implements Suspender.
	Suspend bool `json:"suspend"`
	// Pool is true when the driver implements Pooler.
	Pool bool `json:"pool"`
	// UpperDir is true when Create honours Spec.UpperDir; without it a
	// Spec with an UpperDir fails with InvalidArgument.
	UpperDir bool `json:"upper_dir"`
	// Network is true when the driver gives sandboxes the network
	// Spec.Network asks for.
	Network bool `json:"network"`
	// MaxCPUs and MaxMemoryMB bound a single sandbox on this driver (0 = no limit).
	MaxCPUs     float64 `json:"max_cpus,omitempty"`
	MaxMemoryMB int64   `json:"max_memory_mb,omitempty"`
}

// Image is a prepared root filesystem the sandbox is built on. The driver
// never modifies the directories in Layers; it puts a writable layer on top.
type Image struct {
	// Ref is the image name or digest, for logs and labels only.
	Ref string `json:"ref"`
	// Layers are read-only directories, topmost first (overlayfs lowerdir order).
	Layers []string `json:"layers"`
	// Env is the image's environment, "K=V" pairs.
	Env []string `json:"env,omitempty"`
	// WorkingDir is the image's default working directory.
	WorkingDir string `json:"working_dir,omitempty"`
	// User is the image's default user: a name or uid, optionally with a
	// group (":group", name or gid); empty for root.
	User string `json:"user,omitempty"`
	// Command is the image's main process, ENTRYPOINT followed by CMD as
	// Docker joins them; empty when the image has none. Drivers do not run
	// it: the node starts it through the guest agent once the sandbox runs.
	Command []string `json:"command,omitempty"`
}

// Spec is everything a driver needs to build a sandbox.
type Spec struct {
	// ID is the sandbox ID, unique on the node. Drivers key all state by it.
	ID    string `json:"id"`
	Image Image  `json:"image"`
	// CPUs is the CPU limit in cores (fractions allowed).
	CPUs float64 `json:"cpus"`
	// MemoryMB is the memory limit; a process exceeding it is killed inside
	// the sandbox, never on the host.
	MemoryMB int64 `json:"memory_mb"`
	// DiskMB is the quota of the writable layer.
	DiskMB int64 `json:"disk_mb"`
	// Env is added to the image environment for the guest agent and every
	// process it starts.
	Env map[string]string `json:"env,omitempty"`
	// Hostname of the sandbox; defaults to the ID.
	Hostname string `json:"hostname,omitempty"`
	// User is the guest agent's default user (for requests that name none);
	// empty means Image.User, then root.
	User string `json:"user,omitempty"`
	// UpperDir, when set, is an existing empty host directory that receives
	// the sandbox's root filesystem changes in overlayfs upper format
	// (whiteouts as 0/0 character devices, opaque directories by xattr). It
	// outlives Destroy, which leaves it in place for the caller. Sandboxes
	// with an UpperDir are never served from or put into a warm pool; the
	// disk quota (DiskMB) is not enforced on it. Only drivers with
	// Capabilities().UpperDir take it; others fail with InvalidArgument.
	//
	// It must be a clean absolute path without ':', ',' or '\' (overlayfs
	// mount options) of an empty directory the driver can use as an
	// overlayfs upper directory (gVisor: on the filesystem of its state
	// dir); otherwise Create fails with InvalidArgument. As the upper root
	// it is the sandbox's "/": Create may set its mode and owner. Besides
	// the changes it may hold overlayfs bookkeeping that a consumer skips:
	// trusted.overlay.* xattrs other than "opaque" (origin, impure, uuid),
	// and whiteouts that are hard links of one another. Drivers without
	// isolation have no root filesystem of their own to capture (see the
	// fake's package doc).
	UpperDir string `json:"upper_dir,omitempty"`
	// Network, when set, gives the sandbox a network (an eth0 with an
	// address, a default route and den's resolver; see internal/sandboxnet)
	// under this egress policy; nil leaves it loopback only. Drivers
	// without Capabilities().Network, or without a network manager,
	// ignore it: the sandbox then has no network at all.
	Network *sandboxnet.Policy `json:"network,omitempty"`
}

// Handle identifies a created sandbox and carries the driver's private,
// versioned state. The node persists it (in the replicated store) and hands
// it back to Recover after a restart. Drivers must accept every State version
// they ever wrote, or fail Recover with a FailedPrecondition error.
type Handle struct {
	ID      string          `json:"id"`
	Driver  string          `json:"driver"`
	Version int             `json:"version"`
	State   json.RawMessage `json:"state,omitempty"`
}

// Status is what a driver observes of a sandbox.
type Status struct {
	// Running is true while the sandbox's processes exist and the guest
	// agent can be dialled.
	Running bool `json:"running"`
	// Reason explains a sandbox that is not running ("exited", "oom", ...).
	Reason    string    `json:"reason,omitempty"`
	StartedAt time.Time `json:"started_at,omitempty"`
}

// Driver is the required lifecycle of a sandbox runtime.
type Driver interface {
	// Capabilities is static and cheap.
	Capabilities() Capabilities

	// Create builds and starts the sandbox described by spec and returns when
	// its guest agent answers on DialGuest. It is idempotent: creating an ID
	// that is already running returns its handle. On any error it leaves
	// nothing behind (it undoes its own steps). Cancelling ctx aborts it.
	Create(ctx context.Context, spec Spec) (*Handle, error)

	// Recover reattaches to a sandbox after the agent restarted, from a
	// handle Create returned. It returns a NotFound error when the sandbox's
	// processes are gone; the caller then marks it failed and calls Destroy.
	Recover(ctx context.Context, h *Handle) error

	// Status reports whether the sandbox is running. NotFound for unknown IDs.
	Status(ctx context.Context, id string) (Status, error)

	// DialGuest opens a stream to the guest agent's HTTP server (envd
	// protocol). The channel does not use the sandbox's network.
	// NotFound for unknown IDs, Unavailable when the sandbox is not running.
	DialGuest(ctx context.Context, id string) (net.Conn, error)

	// Destroy stops the sandbox and removes all its host state. It is
	// idempotent, succeeds for unknown IDs and is safe on half-built state.
	Destroy(ctx context.Context, id string) error

	// Close releases driver resources. Sandboxes keep running.
	Close() error
}

// Stats is a point-in-time resource reading of one sandbox.
type Stats struct {
	CPUUsageNanos  uint64    `json:"cpu_usage_ns"`
	MemoryBytes    uint64    `json:"memory_bytes"`
	MemoryLimit    uint64    `json:"memory_limit_bytes"`
	DiskUsedBytes  uint64    `json:"disk_used_bytes"`
	DiskLimitBytes uint64    `json:"disk_limit_bytes"`
	PIDs           uint64    `json:"pids"`
	At             time.Time `json:"at"`
}

// StatsReader is an optional interface: resource usage of a sandbox.
type StatsReader interface {
	Stats(ctx context.Context, id string) (Stats, error)
}

// Waiter is an optional interface: Wait blocks until the sandbox stops
// running (its processes died: crash, OOM kill, external kill) or ctx ends,
// and returns the final Status. It returns at once for a sandbox that is
// not running; NotFound for unknown IDs. The node uses it to record a
// sandbox that died on its own as failed, with the reason.
type Waiter interface {
	Wait(ctx context.Context, id string) (Status, error)
}

// Claimer is an optional interface of a driver that keeps warm spares
// (see internal/driver/warmpool): Claim creates the sandbox of spec from a
// ready spare of its shape, as Create would, and returns nil and no error
// when none is ready or the claim failed (the spare is then gone): the
// caller creates it with Create. A claim takes about a millisecond, so the
// node records a claimed sandbox once, when it runs, where Create's record
// comes first.
type Claimer interface {
	Claim(ctx context.Context, spec Spec) (*Handle, error)
}

// GuestHandoff is an optional interface of a driver whose guest agents run
// in this process (the simulator): HandOffGuest gives sandbox id's guest a
// stream from afar (a node link's) to serve itself, where DialGuest would
// need a pipe to the guest and a copy each way. It fails, without calling
// accept, when the sandbox does not run; once accept has returned the
// stream is the guest's, and it returns nil.
type GuestHandoff interface {
	HandOffGuest(ctx context.Context, id string, accept func() (net.Conn, error)) error
}

// Lister is an optional interface: List returns the IDs of every sandbox
// the driver holds host state for (running, stopped or half-built), in no
// particular order. Warm spares a driver keeps for itself are not listed.
// The node uses it to destroy sandboxes that no record names, such as the
// one-off sandboxes of build steps that a crash left behind.
type Lister interface {
	List(ctx context.Context) ([]string, error)
}

// ReasonSuspended is the Status.Reason of a sandbox that Suspender.Suspend
// stopped: not running, its state saved, waiting for Resume or Destroy.
const ReasonSuspended = "suspended"

// Suspender is an optional interface: checkpoint a sandbox to disk and
// bring it back later, or start copies of it, with its memory, processes
// and filesystem.
//
// A checkpoint is a set of files in a directory the caller owns: Suspend
// and Checkpoint write them, Resume and Clone only read them, and no
// method removes them (Destroy included). Connections to the guest agent
// (DialGuest streams) do not survive a checkpoint; processes inside do.
//
// A suspended sandbox keeps its ID and its host state until Resume or
// Destroy: Status reports it not running with Reason ReasonSuspended,
// DialGuest answers Unavailable, Wait returns at once with that status,
// Lister lists it and Recover of its handle succeeds (also after a driver
// restart). It is never a warm spare.
type Suspender interface {
	// Suspend writes the sandbox's complete state (memory, processes, open
	// files, the writable filesystem layer) as files into dir — an empty
	// directory the caller created on the data dir's file system — and
	// stops the sandbox, releasing its CPU and memory. The caller fsyncs
	// and checksums the files afterwards; Suspend does not return before
	// every file in dir is complete. NotFound for unknown IDs;
	// FailedPrecondition for a sandbox that is not running, or whose root
	// filesystem is a caller's Spec.UpperDir. On error the sandbox keeps
	// running if it can (the caller checks Status) and dir holds no
	// checkpoint (files may remain; a retry needs an empty dir).
	Suspend(ctx context.Context, id string, dir string) error

	// Checkpoint is Suspend without the stop: it writes the same files
	// into dir and the sandbox keeps running (its processes pause while
	// the state is written, and guest connections are cut). Clone starts
	// copies from dir; this is how a running sandbox is forked. Errors as
	// for Suspend.
	Checkpoint(ctx context.Context, id string, dir string) error

	// Resume restores the suspended sandbox spec.ID from dir (written by
	// its Suspend, or by an earlier Checkpoint of it) under its own ID and
	// returns its new handle, which replaces the one Create returned, once
	// the guest agent answers DialGuest. spec is the Spec the sandbox was
	// created with. NotFound when the driver holds no sandbox spec.ID,
	// FailedPrecondition when it is not suspended, InvalidArgument when
	// dir holds no complete checkpoint of this sandbox. On error nothing is
	// left running, the sandbox stays suspended and dir is untouched.
	Resume(ctx context.Context, spec Spec, dir string) (*Handle, error)

	// Clone starts a new, independent sandbox spec.ID from the checkpoint
	// in dir (written by Suspend or Checkpoint of another sandbox, which
	// may be running, suspended, resumed or destroyed since): its
	// processes continue from the saved point, its filesystem writes are
	// its own, and its hostname is spec's. dir is only read and may be
	// used by several Clones at once. spec is the source's Spec with a new
	// ID (and hostname); InvalidArgument when dir holds no complete
	// checkpoint, or when spec cannot run it (other image layers, disk
	// size or an UpperDir). AlreadyExists when spec.ID exists. On error it
	// leaves nothing behind.
	Clone(ctx context.Context, spec Spec, dir string) (*Handle, error)
}
