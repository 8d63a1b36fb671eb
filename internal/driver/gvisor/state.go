package gvisor

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/fsutil"
)

// stateVersion is the Handle.Version this package writes. Recover accepts
// every version listed in decodeState: 1 (no RuntimeID), 2 and 3.
const stateVersion = 3

// Phases of a sandbox around checkpoints (sandboxState.Phase).
const (
	// phaseCheckpointing: a checkpoint is being written; the guest agent
	// may have closed its socket (see suspend.go).
	phaseCheckpointing = "checkpointing"
	// phaseSuspended: the sandbox was checkpointed and stopped; its runsc
	// container is gone, its directory and rootfs mount stay.
	phaseSuspended = "suspended"
)

// sandboxState is the private part of a Handle, and the content of den.json
// in the sandbox directory. Version 2 added RuntimeID, so that a version-1
// driver refuses (rather than misreads) a sandbox claimed from the warm pool.
// Version 3 added Phase, so that a version-2 driver refuses a sandbox that
// may be suspended rather than calling it dead; and Layers, GuestBinary
// and CheckpointHook, and runtime IDs ending in runtimeIDSuffix. Handles
// keep the state of Create or Resume: Phase is read from den.json.
type sandboxState struct {
	// Dir is the sandbox directory; Recover checks it is this driver's.
	Dir string `json:"dir"`
	// RunscRoot is runsc's --root for the sandbox.
	RunscRoot string `json:"runsc_root"`
	// RuntimeID is the runsc container ID: runtimeIDFor the sandbox ID,
	// or of the spare's ID for a sandbox claimed from the warm pool (whose
	// cgroup is named after the spare too) until it is resumed. Empty
	// (version 1) means the sandbox ID; versions 1 and 2 used bare IDs.
	RuntimeID string `json:"runtime_id,omitempty"`
	Platform  string `json:"platform"`
	// Cgroup is the sandbox cgroup path (relative to a hierarchy root).
	Cgroup string `json:"cgroup"`
	// CPUQuotaUS is the CFS quota per 100 ms of the sandbox's CPU limit,
	// which den applies to the cgroup after the start (cpulimit.go); 0:
	// none, or a sandbox started by a version whose runsc applied it.
	CPUQuotaUS     int64     `json:"cpu_quota_us,omitempty"`
	MemoryLimit    uint64    `json:"memory_limit_bytes,omitempty"`
	DiskLimitBytes uint64    `json:"disk_limit_bytes,omitempty"`
	StartedAt      time.Time `json:"started_at"`
	// UpperDir is the caller's upper directory (driver.Spec.UpperDir), if
	// any. It needs no new version: a driver that predates it ignores it,
	// and nothing it does with the sandbox touches that directory (it
	// lies outside Dir; Destroy unmounts before removing Dir).
	UpperDir string `json:"upper_dir,omitempty"`
	// Layers are the image layers of the host overlay (driver.Image.Layers),
	// recorded in checkpoints so that Clone can check its spec.
	Layers []string `json:"layers,omitempty"`
	// Phase is "" (running or dead: runsc knows), phaseCheckpointing or
	// phaseSuspended.
	Phase string `json:"phase,omitempty"`
	// GuestBinary is the installed guest binary the sandbox binds (see
	// guestbin.go); empty for sandboxes that bound Config.GuestBinary.
	GuestBinary string `json:"guest_binary,omitempty"`
	// CheckpointHook is true once the sandbox's kernel runs den's
	// checkpoint hook around every checkpoint and restore (see
	// suspend.go): after its first checkpoint, and for every sandbox
	// restored from one.
	CheckpointHook bool `json:"checkpoint_hook,omitempty"`
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

func (p paths) rootfs() string     { return filepath.Join(p.dir, "rootfs") }
func (p paths) upper() string      { return filepath.Join(p.dir, "upper") }
func (p paths) work() string       { return filepath.Join(p.dir, "work") }
func (p paths) initLayer() string  { return filepath.Join(p.dir, "init") }
func (p paths) filestore() string  { return filepath.Join(p.dir, "filestore") }
func (p paths) run() string        { return filepath.Join(p.dir, "run") }
func (p paths) socket() string     { return filepath.Join(p.dir, "run", guestSocketName) }
func (p paths) log() string        { return filepath.Join(p.dir, "runsc.log") }
func (p paths) pidFile() string    { return filepath.Join(p.dir, "sandbox.pid") }
func (p paths) stateFile() string  { return filepath.Join(p.dir, "den.json") }
func (p paths) resolvConf() string { return filepath.Join(p.dir, "resolv.conf") }

// writeState persists st in den.json (atomically) and returns it encoded.
func writeState(p paths, st sandboxState) (json.RawMessage, error) {
	data, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode sandbox state: %w", err)
	}
	stateWrites.wait(p.stateFile())
	return data, writeStateData(p, data)
}

// writeStateData writes encoded state to den.json (atomically).
func writeStateData(p paths, data []byte) error {
	if err := fsutil.ReplaceFile(p.stateFile(), data, 0o600); err != nil {
		return fmt.Errorf("write sandbox state: %w", err)
	}
	return nil
}

// stateWrites are the den.json writes in flight in the background: a
// claim's (see claim.go). Every read and write of a den.json waits for its
// pending write first, so none sees the state it replaces or is undone by it.
var stateWrites pendingWrites

// pendingWrites tracks background writes by file.
type pendingWrites struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

// start runs write in the background as file's pending write. A file has
// at most one: start waits for the one before.
func (w *pendingWrites) start(file string, write func()) {
	w.wait(file)
	done := make(chan struct{})
	w.mu.Lock()
	if w.m == nil {
		w.m = map[string]chan struct{}{}
	}
	w.m[file] = done
	w.mu.Unlock()
	go func() {
		defer func() {
			w.mu.Lock()
			if w.m[file] == done {
				delete(w.m, file)
			}
			w.mu.Unlock()
			close(done)
		}()
		write()
	}()
}

// wait returns once file has no pending write.
func (w *pendingWrites) wait(file string) {
	w.mu.Lock()
	done := w.m[file]
	w.mu.Unlock()
	if done != nil {
		<-done
	}
}

// readState loads den.json. NotFound when the sandbox directory or file is
// missing (never created, destroyed, or Create has not got that far).
func readState(p paths) (sandboxState, error) {
	var st sandboxState
	stateWrites.wait(p.stateFile())
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

// runtimeIDSuffix ends every runsc container ID this package creates.
// runsc resolves a container ID as a prefix: `runsc delete x` deletes
// container "x-fork" when no "x" exists, and fails as "ambiguous" on "x"
// itself once "x-fork" exists. Sandbox IDs never hold '+' (see validID)
// and runsc accepts it, so IDs ending in '+' are never a prefix of one
// another. Sandboxes of state versions 1 and 2 use their bare ID.
const runtimeIDSuffix = "+"

// runtimeIDFor is the runsc container ID a new sandbox (or spare) id gets.
func runtimeIDFor(id string) string { return id + runtimeIDSuffix }

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
	if h.Version < 1 || h.Version > stateVersion {
		return st, errdefs.New(errdefs.FailedPrecondition, "sandbox %s: gvisor handle version %d is not supported (want 1 to %d)", h.ID, h.Version, stateVersion)
	}
	if err := json.Unmarshal(h.State, &st); err != nil {
		return st, errdefs.Wrap(errdefs.FailedPrecondition, err, "sandbox %s: decode gvisor handle state", h.ID)
	}
	return st, nil
}
