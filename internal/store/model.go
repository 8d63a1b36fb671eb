package store

import (
	"encoding/json"
	"maps"
	"slices"
	"time"
)

// Sandbox states. A sandbox moves forward through them; terminated and failed
// are terminal.
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

// States lists every valid sandbox state.
var States = []string{
	StatePending, StateStarting, StateRunning, StateSuspending, StateSuspended,
	StateResuming, StateStopping, StateTerminated, StateFailed,
}

// ValidState reports whether s is one of [States].
func ValidState(s string) bool { return slices.Contains(States, s) }

// IsTerminal reports whether a sandbox in state s will never run again.
// A terminal sandbox no longer holds its (Tenant, Name).
func IsTerminal(s string) bool { return s == StateTerminated || s == StateFailed }

// Sandbox is the desired and observed state of one sandbox. It is a data
// contract persisted in the raft log: add fields, never rename or retype them.
type Sandbox struct {
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
	Tenant string `json:"tenant"`
	Image  string `json:"image,omitempty"`

	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`

	Runtime string `json:"runtime,omitempty"`
	Node    string `json:"node,omitempty"`

	CPUs     float64 `json:"cpus,omitempty"`
	MemoryMB int64   `json:"memory_mb,omitempty"`
	DiskMB   int64   `json:"disk_mb,omitempty"`

	Env      map[string]string `json:"env,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`

	TimeoutSec int64 `json:"timeout_sec,omitempty"`
	// TimeoutAction is what happens when the timeout passes: ActionKill
	// (also when empty) or ActionSuspend.
	TimeoutAction string `json:"timeout_action,omitempty"`
	// IdleTimeoutSec is how long the sandbox may go without activity
	// before IdleAction applies; 0 means never.
	IdleTimeoutSec int64  `json:"idle_timeout_sec,omitempty"`
	IdleAction     string `json:"idle_action,omitempty"`
	// TimeoutLeftMs is the life a suspended sandbox has left when it
	// resumes (timers do not run while it is suspended); 0 means a full
	// TimeoutSec. Set only in states suspended and resuming.
	TimeoutLeftMs int64 `json:"timeout_left_ms,omitempty"`

	// User is the default user of the sandbox's processes; empty means the
	// image's.
	User string `json:"user,omitempty"`
	// AccessToken is the secret that sandbox traffic (the E2B envd plane)
	// must present; the store keeps what it is given.
	AccessToken string `json:"access_token,omitempty"`

	// Zero times are unset.
	CreatedAt time.Time `json:"created_at"`
	StartedAt time.Time `json:"started_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// SuspendedAt is when the sandbox was last suspended; zero unless it
	// is suspended (or resuming).
	SuspendedAt time.Time `json:"suspended_at,omitempty"`

	// Snapshot names the saved state of the sandbox on its node: the
	// latest complete one. Set from the first suspend on; it is kept
	// while the sandbox runs again, until the next suspend replaces it.
	Snapshot *SnapshotRef `json:"snapshot,omitempty"`
	// FromSnapshot is the ID of the snapshot object (SandboxSnapshot) the
	// sandbox was started from: its node clones it rather than creating
	// it from its image. Empty for a sandbox created from an image.
	FromSnapshot string `json:"from_snapshot,omitempty"`

	// Network is the sandbox's egress policy (see internal/sandboxnet);
	// nil for a sandbox without a network (records made before sandboxes
	// had networks).
	Network *NetworkPolicy `json:"network,omitempty"`
	// PublicPorts are the ports inside the sandbox that its URLs serve
	// without a token or signature; 0 stands for every port. Sorted.
	PublicPorts []int `json:"public_ports,omitempty"`

	// Handle is the driver's handle, opaque to the store. It must be valid
	// JSON when set.
	Handle json.RawMessage `json:"handle,omitempty"`

	// ModifyIndex is the raft index of the last change, set by the FSM.
	ModifyIndex uint64 `json:"modify_index"`
}

// Clone returns a deep copy of sb.
func (sb *Sandbox) Clone() *Sandbox {
	if sb == nil {
		return nil
	}
	c := *sb
	c.Env = maps.Clone(sb.Env)
	c.Metadata = maps.Clone(sb.Metadata)
	if sb.Network != nil {
		n := sb.Network.Clone()
		c.Network = &n
	}
	c.Handle = slices.Clone(sb.Handle)
	c.PublicPorts = slices.Clone(sb.PublicPorts)
	if sb.Snapshot != nil {
		ref := *sb.Snapshot
		c.Snapshot = &ref
	}
	return &c
}

// PortPublic reports whether port of sb is served without credentials.
func (sb *Sandbox) PortPublic(port int) bool {
	for _, p := range sb.PublicPorts {
		if p == 0 || p == port {
			return true
		}
	}
	return false
}

// Actions of a sandbox's timeout and idle timeout.
const (
	ActionKill    = "kill"
	ActionSuspend = "suspend"
)

// ValidAction reports whether a is an action a record may hold ("" is
// ActionKill).
func ValidAction(a string) bool { return a == "" || a == ActionKill || a == ActionSuspend }

// SnapshotRef names one complete snapshot of a sandbox in its node's
// snapshot directory.
type SnapshotRef struct {
	// Generation numbers the sandbox's snapshots from 1; each suspend
	// writes the next.
	Generation uint64 `json:"generation"`
	// Size is the total size of the snapshot's files in bytes.
	Size int64 `json:"size"`
	// Digest is "sha256:<hex>" of the snapshot's manifest, which lists
	// every file with its size and sha256: it pins the whole snapshot.
	Digest string `json:"digest"`
}

// StopTimers is the timer bookkeeping of a suspend at now: the life left
// is kept in TimeoutLeftMs (0 when the timeout has passed: the next
// resume starts a full one), ExpiresAt is cleared, SuspendedAt set.
func (sb *Sandbox) StopTimers(now time.Time) {
	sb.TimeoutLeftMs = 0
	if !sb.ExpiresAt.IsZero() {
		sb.TimeoutLeftMs = max(0, sb.ExpiresAt.Sub(now).Milliseconds())
	}
	sb.ExpiresAt, sb.SuspendedAt = time.Time{}, now
}

// RestartTimers is the timer bookkeeping of a resume at now: the life
// left at the suspend continues (a full TimeoutSec when none was left).
func (sb *Sandbox) RestartTimers(now time.Time) {
	sb.ExpiresAt = time.Time{}
	if sb.TimeoutSec > 0 {
		left := time.Duration(sb.TimeoutLeftMs) * time.Millisecond
		if left <= 0 {
			left = time.Duration(sb.TimeoutSec) * time.Second
		}
		sb.ExpiresAt = now.Add(left)
	}
	sb.TimeoutLeftMs, sb.SuspendedAt = 0, time.Time{}
}

// APIKey is a tenant's credential. Only the hash of the secret is stored.
type APIKey struct {
	ID     string `json:"id"`
	Tenant string `json:"tenant"`
	Name   string `json:"name,omitempty"`
	// Hash is the hex-encoded sha256 of the secret.
	Hash      string    `json:"hash"`
	Admin     bool      `json:"admin,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Clone returns a copy of k.
func (k *APIKey) Clone() *APIKey {
	if k == nil {
		return nil
	}
	c := *k
	return &c
}

// normalTime strips the monotonic reading and location so that a time
// survives a JSON round trip through the log unchanged.
func normalTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Round(0).UTC()
}

func (sb *Sandbox) normalizeTimes() {
	sb.CreatedAt = normalTime(sb.CreatedAt)
	sb.StartedAt = normalTime(sb.StartedAt)
	sb.ExpiresAt = normalTime(sb.ExpiresAt)
	sb.SuspendedAt = normalTime(sb.SuspendedAt)
}

// NetworkPolicy is a sandbox's egress policy as the store keeps it: the
// internet on or off, and allow and deny rules (IPv4 addresses or CIDRs,
// domains, *.domains), validated and normalized before they are stored.
type NetworkPolicy struct {
	Internet bool     `json:"internet"`
	Allow    []string `json:"allow,omitempty"`
	Deny     []string `json:"deny,omitempty"`
}

// Clone returns a deep copy of p.
func (p NetworkPolicy) Clone() NetworkPolicy {
	p.Allow, p.Deny = slices.Clone(p.Allow), slices.Clone(p.Deny)
	return p
}
