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
	c.Handle = slices.Clone(sb.Handle)
	return &c
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
}
