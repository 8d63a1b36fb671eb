package gvisor

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
)

// stateVersion is the Handle.Version this package writes. Recover accepts
// every version listed in decodeState: 1 (no RuntimeID) and 2.
const stateVersion = 2

// sandboxState is the private part of a Handle, and the content of den.json
// in the sandbox directory. Version 2 added RuntimeID, so that a version-1
// driver refuses (rather than misreads) a sandbox claimed from the warm pool.
type sandboxState struct {
	// Dir is the sandbox directory; Recover checks it is this driver's.
	Dir string `json:"dir"`
	// RunscRoot is runsc's --root for the sandbox.
	RunscRoot string `json:"runsc_root"`
	// RuntimeID is the runsc container ID. It differs from the sandbox ID
	// for a sandbox claimed from the warm pool (it is the spare's ID, as is
	// the cgroup's name); empty (version 1) means the sandbox ID.
	RuntimeID string `json:"runtime_id,omitempty"`
	Platform  string `json:"platform"`
	// Cgroup is the sandbox cgroup path (relative to a hierarchy root).
	Cgroup         string    `json:"cgroup"`
	MemoryLimit    uint64    `json:"memory_limit_bytes,omitempty"`
	DiskLimitBytes uint64    `json:"disk_limit_bytes,omitempty"`
	StartedAt      time.Time `json:"started_at"`
	// UpperDir is the caller's upper directory (driver.Spec.UpperDir), if
	// any. It needs no new version: a driver that predates it ignores it,
	// and nothing it does with the sandbox touches that directory (it
	// lies outside Dir; Destroy unmounts before removing Dir).
	UpperDir string `json:"upper_dir,omitempty"`
}

// validID is what a sandbox ID may look like: it becomes a directory name,
// a runsc container ID and a cgroup name.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

func checkID(id string) error {
	if !validID.MatchString(id) {
		return errdefs.New(errdefs.InvalidArgument, "invalid sandbox id %q: want 1-128 of [A-Za-z0-9_.-], not starting with a punctuation mark", id)
	}
	return nil
}

// paths are the host paths of one sandbox, all derived from its directory.
type paths struct{ dir string }

func (p paths) rootfs() string    { return filepath.Join(p.dir, "rootfs") }
func (p paths) upper() string     { return filepath.Join(p.dir, "upper") }
func (p paths) work() string      { return filepath.Join(p.dir, "work") }
func (p paths) initLayer() string { return filepath.Join(p.dir, "init") }
func (p paths) filestore() string { return filepath.Join(p.dir, "filestore") }
func (p paths) run() string       { return filepath.Join(p.dir, "run") }
func (p paths) socket() string    { return filepath.Join(p.dir, "run", guestSocketName) }
func (p paths) log() string       { return filepath.Join(p.dir, "runsc.log") }
func (p paths) pidFile() string   { return filepath.Join(p.dir, "sandbox.pid") }
func (p paths) stateFile() string { return filepath.Join(p.dir, "den.json") }

// writeState persists st in den.json (atomically) and returns it encoded.
func writeState(p paths, st sandboxState) (json.RawMessage, error) {
	data, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode sandbox state: %w", err)
	}
	tmp := p.stateFile() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return nil, fmt.Errorf("write sandbox state: %w", err)
	}
	if err := os.Rename(tmp, p.stateFile()); err != nil {
		return nil, fmt.Errorf("write sandbox state: %w", err)
	}
	return data, nil
}

// readState loads den.json. NotFound when the sandbox directory or file is
// missing (never created, destroyed, or Create has not got that far).
func readState(p paths) (sandboxState, error) {
	var st sandboxState
	data, err := os.ReadFile(p.stateFile())
	if os.IsNotExist(err) {
		return st, errdefs.New(errdefs.NotFound, "sandbox state %s not found", p.stateFile())
	}
	if err != nil {
		return st, fmt.Errorf("read sandbox state: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("decode sandbox state %s: %w", p.stateFile(), err)
	}
	return st, nil
}

// runtimeID is the runsc container ID of sandbox id.
func (st sandboxState) runtimeID(id string) string {
	if st.RuntimeID != "" {
		return st.RuntimeID
	}
	return id
}

// decodeState reads the private state of a Handle this driver wrote.
func decodeState(h *driver.Handle) (sandboxState, error) {
	var st sandboxState
	if h.Version != 1 && h.Version != stateVersion {
		return st, errdefs.New(errdefs.FailedPrecondition, "sandbox %s: gvisor handle version %d is not supported (want 1 or %d)", h.ID, h.Version, stateVersion)
	}
	if err := json.Unmarshal(h.State, &st); err != nil {
		return st, errdefs.Wrap(errdefs.FailedPrecondition, err, "sandbox %s: decode gvisor handle state", h.ID)
	}
	return st, nil
}
