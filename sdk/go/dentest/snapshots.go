package dentest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/denhq/den/api/rest"
)

// Snapshots and fork, as the real server answers them; a copy is a new
// running record (the fake has no processes to copy).

func (s *Server) createSnapshot(w http.ResponseWriter, r *http.Request) {
	var req rest.CreateSnapshotRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", "bad JSON body: %v", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sb := s.lookup(req.Sandbox)
	if sb == nil {
		writeError(w, http.StatusNotFound, "not_found", "sandbox %s not found", req.Sandbox)
		return
	}
	snap, ok := s.snapshot(w, sb, req.Name)
	if ok {
		writeJSON(w, http.StatusCreated, snap)
	}
}

// snapshot records a snapshot of sb. Preconditions: s.mu is held.
func (s *Server) snapshot(w http.ResponseWriter, sb *rest.Sandbox, name string) (*rest.Snapshot, bool) {
	if sb.State != rest.StateRunning {
		writeError(w, http.StatusConflict, "failed_precondition", "sandbox %s is %s: only a running sandbox can be snapshotted", sb.ID, sb.State)
		return nil, false
	}
	if other := s.lookupSnapshot(name); name != "" && other != nil {
		writeError(w, http.StatusConflict, "already_exists", "snapshot name %q is taken by snapshot %s", name, other.ID)
		return nil, false
	}
	s.seq++
	snap := &rest.Snapshot{ID: fmt.Sprintf("snap-%04d", s.seq), Name: name, Sandbox: sb.ID, Image: sb.Image, Mode: rest.SnapshotModeMemory,
		CPUs: sb.CPUs, MemoryMB: sb.MemoryMB, DiskMB: sb.DiskMB, SizeBytes: 4096, Node: "fake", CreatedAt: time.Now().UTC()}
	s.snapshots = append(s.snapshots, snap)
	return snap, true
}

// lookupSnapshot finds a snapshot by ID or name. Preconditions: s.mu is held.
func (s *Server) lookupSnapshot(idOrName string) *rest.Snapshot {
	for _, snap := range s.snapshots {
		if snap.ID == idOrName || (snap.Name != "" && snap.Name == idOrName) {
			return snap
		}
	}
	return nil
}

func (s *Server) listSnapshots(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := rest.SnapshotList{Snapshots: []rest.Snapshot{}}
	for _, snap := range s.snapshots {
		out.Snapshots = append(out.Snapshots, *snap)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getSnapshot(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if snap := s.lookupSnapshot(r.PathValue("id")); snap != nil {
		writeJSON(w, http.StatusOK, snap)
		return
	}
	writeError(w, http.StatusNotFound, "not_found", "snapshot %s not found", r.PathValue("id"))
}

func (s *Server) deleteSnapshot(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := s.lookupSnapshot(r.PathValue("id"))
	if snap == nil {
		writeError(w, http.StatusNotFound, "not_found", "snapshot %s not found", r.PathValue("id"))
		return
	}
	s.snapshots = slices.DeleteFunc(s.snapshots, func(x *rest.Snapshot) bool { return x == snap })
	w.WriteHeader(http.StatusNoContent)
}

// createFromSnapshot answers a create with a snapshot. Preconditions: s.mu
// is held.
func (s *Server) createFromSnapshot(w http.ResponseWriter, req rest.CreateSandboxRequest) {
	snap := s.lookupSnapshot(req.Snapshot)
	if snap == nil {
		writeError(w, http.StatusNotFound, "not_found", "snapshot %s not found", req.Snapshot)
		return
	}
	writeJSON(w, http.StatusCreated, s.copyOf(snap, req.Name))
}

// copyOf records a running sandbox started from snap. Preconditions: s.mu
// is held.
func (s *Server) copyOf(snap *rest.Snapshot, name string) *rest.Sandbox {
	s.seq++
	now := time.Now().UTC()
	sb := &rest.Sandbox{ID: fmt.Sprintf("sb-%04d", s.seq), Name: name, Image: snap.Image, State: rest.StateRunning,
		Runtime: "fake", Node: "fake", CPUs: snap.CPUs, MemoryMB: snap.MemoryMB, DiskMB: snap.DiskMB,
		Timeout: rest.DefaultTimeoutSeconds, TimeoutAction: rest.ActionKill, CreatedAt: now, StartedAt: &now, FromSnapshot: snap.ID}
	s.sandboxes[sb.ID] = sb
	s.order = append(s.order, sb.ID)
	return sb
}

func (s *Server) fork(w http.ResponseWriter, r *http.Request) {
	var req rest.ForkRequest
	if r.ContentLength != 0 {
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_argument", "bad JSON body: %v", err)
			return
		}
	}
	if req.Count == 0 {
		req.Count = 1
	}
	if req.Count < 1 || req.Count > rest.MaxForkCount {
		writeError(w, http.StatusBadRequest, "invalid_argument", "count must be between 1 and %d, got %d", rest.MaxForkCount, req.Count)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sb := s.lookup(r.PathValue("id"))
	if sb == nil {
		writeError(w, http.StatusNotFound, "not_found", "sandbox %s not found", r.PathValue("id"))
		return
	}
	snap, ok := s.snapshot(w, sb, req.SnapshotName)
	if !ok {
		return
	}
	out := rest.ForkResponse{}
	for range req.Count {
		out.Sandboxes = append(out.Sandboxes, *s.copyOf(snap, ""))
	}
	if req.SnapshotName == "" {
		s.snapshots = slices.DeleteFunc(s.snapshots, func(x *rest.Snapshot) bool { return x == snap })
	} else {
		out.Snapshot = snap.ID
	}
	writeJSON(w, http.StatusCreated, out)
}
