package server

import (
	"context"
	"net/http"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

// Snapshot objects and fork. The node checkpoints and clones; the server
// adds tenancy, names, validation and the records of new sandboxes.

// CreateSnapshot saves running sandbox req.Sandbox of p's tenant as a
// snapshot; the sandbox keeps running. Mode memory (the default) saves
// memory, processes and files; mode filesystem the root filesystem's
// changes only. FailedPrecondition when it is not running, AlreadyExists
// when the name is taken, InvalidArgument for another mode, Unsupported
// for a runtime that cannot snapshot in that mode.
func (s *Server) CreateSnapshot(ctx context.Context, p Principal, req rest.CreateSnapshotRequest) (*store.SandboxSnapshot, error) {
	mode := req.Mode
	switch mode {
	case "":
		mode = rest.SnapshotModeMemory
	case rest.SnapshotModeMemory, rest.SnapshotModeFilesystem:
	default:
		return nil, errdefs.New(errdefs.InvalidArgument, "mode must be %q or %q, got %q", rest.SnapshotModeMemory, rest.SnapshotModeFilesystem, req.Mode)
	}
	if req.Sandbox == "" {
		return nil, errdefs.New(errdefs.InvalidArgument, "sandbox is required")
	}
	sb, err := s.Lookup(p, req.Sandbox)
	if err != nil {
		return nil, err
	}
	return s.snapshot(ctx, p, sb, req.Name, mode)
}

// snapshot saves sandbox sb into a new snapshot named name, in mode
// (rest.SnapshotModeMemory or rest.SnapshotModeFilesystem).
func (s *Server) snapshot(ctx context.Context, p Principal, sb *store.Sandbox, name, mode string) (*store.SandboxSnapshot, error) {
	if name != "" && !nameRE.MatchString(name) {
		return nil, errdefs.New(errdefs.InvalidArgument, "name %q is invalid: use 1-63 lowercase letters, digits and dashes", name)
	}
	if name == "usage" { // GET /v1/snapshots/usage is the usage report
		return nil, errdefs.New(errdefs.InvalidArgument, "name %q is reserved: choose another", name)
	}
	memory := mode == rest.SnapshotModeMemory
	if memory {
		if err := s.checkSnapshotsOn(sb.Runtime, "snapshot"); err != nil {
			return nil, err
		}
	}
	if sb.State != rest.StateRunning {
		return nil, errdefs.New(errdefs.FailedPrecondition, "sandbox %s is %s: only a running sandbox can be snapshotted", sb.ID, sb.State)
	}
	if name != "" {
		if other, err := s.cfg.Store.Snapshot().SandboxSnapshotByName(p.Tenant, name); err == nil {
			return nil, errdefs.New(errdefs.AlreadyExists, "snapshot name %q is taken by snapshot %s", name, other.ID)
		}
	}
	done, err := s.beginSnapshot(p.Tenant)
	if err != nil {
		return nil, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lifecycleTimeout)
	defer cancel()
	rec := &store.SandboxSnapshot{ID: "snap-" + newSandboxID()[:16], Name: name, Tenant: p.Tenant, Sandbox: sb.ID, Mode: mode}
	out, err := s.cfg.Node.CreateSnapshot(ctx, rec)
	if memory {
		s.proxies.forget(sb.ID) // the checkpoint cut its guest connections
	}
	return out, err
}

// LookupSnapshot finds a snapshot of p's tenant by ID or name; NotFound
// for one of another tenant, exactly as for one that does not exist.
func (s *Server) LookupSnapshot(p Principal, idOrName string) (*store.SandboxSnapshot, error) {
	snap := s.cfg.Store.Snapshot()
	if rec, err := snap.SandboxSnapshot(idOrName); err == nil && rec.Tenant == p.Tenant {
		return rec, nil
	}
	if rec, err := snap.SandboxSnapshotByName(p.Tenant, idOrName); err == nil {
		return rec, nil
	}
	return nil, errdefs.New(errdefs.NotFound, "snapshot %s not found", idOrName)
}

// ListSnapshots returns p's snapshots, oldest first.
func (s *Server) ListSnapshots(p Principal) ([]*store.SandboxSnapshot, error) {
	return s.cfg.Store.Snapshot().SandboxSnapshots(p.Tenant)
}

// DeleteSnapshot removes a snapshot of p's tenant; sandboxes started from
// it are not affected.
func (s *Server) DeleteSnapshot(ctx context.Context, p Principal, idOrName string) error {
	rec, err := s.LookupSnapshot(p, idOrName)
	if err != nil {
		return err
	}
	if err := s.checkSnapshotUnpooled(rec.ID); err != nil {
		return err
	}
	return s.cfg.Node.DeleteSnapshot(ctx, rec.ID)
}

// createFromSnapshot is CreateSandbox from a snapshot: a new sandbox with
// the snapshot's image, size and environment, cloned from its files.
func (s *Server) createFromSnapshot(ctx context.Context, p Principal, req rest.CreateSandboxRequest) (*store.Sandbox, error) {
	if req.Image != "" || req.CPUs != 0 || req.MemoryMB != 0 || req.DiskMB != 0 || req.Env != nil || req.User != "" {
		return nil, errdefs.New(errdefs.InvalidArgument, "a sandbox created from a snapshot takes its image, cpus, memory_mb, disk_mb, env and user from the snapshot: leave them unset")
	}
	rec, err := s.LookupSnapshot(p, req.Snapshot)
	if err != nil {
		return nil, err
	}
	if rec.IsFilesystem() {
		return s.bootFromSnapshot(ctx, p, req, rec)
	}
	sb, err := s.cloneRecord(req, p, rec)
	if err != nil {
		return nil, err
	}
	out, err := s.startClones(ctx, rec.ID, []*store.Sandbox{sb})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// bootFromSnapshot creates a sandbox from filesystem snapshot rec: a
// cold start on the snapshot's image, with its size, env and user.
func (s *Server) bootFromSnapshot(ctx context.Context, p Principal, req rest.CreateSandboxRequest, rec *store.SandboxSnapshot) (*store.Sandbox, error) {
	if err := s.checkSnapshotImage(rec); err != nil {
		return nil, err
	}
	sb, err := s.cloneRecord(req, p, rec)
	if err != nil {
		return nil, err
	}
	sb.Image = rec.FilesystemImage
	return s.recordAndStart(ctx, sb, capacityWait(req))
}

// checkSnapshotImage checks that the image of filesystem snapshot rec is
// still the one it recorded, on this node, with the snapshot's layer on
// top; FailedPrecondition otherwise (an admin removed the image).
func (s *Server) checkSnapshotImage(rec *store.SandboxSnapshot) error {
	if id := s.cfg.Node.ID(); rec.Node != id {
		return errdefs.New(errdefs.FailedPrecondition, "snapshot %s is on node %s, not %s", rec.ID, rec.Node, id)
	}
	img, err := s.cfg.Images.Get(rec.FilesystemImage)
	if err != nil || img.ID != rec.FilesystemImage || len(img.Layers) == 0 || img.Layers[len(img.Layers)-1] != rec.FilesystemLayer {
		return errdefs.New(errdefs.FailedPrecondition, "snapshot %s: its image %s is gone from node %s", rec.ID, rec.FilesystemImage, rec.Node)
	}
	return nil
}

// cloneRecord is the record of a new sandbox cloned from snapshot rec.
func (s *Server) cloneRecord(req rest.CreateSandboxRequest, p Principal, rec *store.SandboxSnapshot) (*store.Sandbox, error) {
	req.Image, req.CPUs, req.MemoryMB, req.DiskMB = rec.Image, rec.CPUs, rec.MemoryMB, rec.DiskMB
	if !rec.IsFilesystem() { // a memory snapshot runs on its own runtime; files boot on any
		if req.Runtime != "" && req.Runtime != rec.Runtime {
			return nil, errdefs.New(errdefs.InvalidArgument, "snapshot %s was taken on runtime %s: its sandboxes run there, not on %s", rec.ID, rec.Runtime, req.Runtime)
		}
		req.Runtime = rec.Runtime
	}
	sb, err := s.newSandboxRecord(req, p)
	if err != nil {
		return nil, err
	}
	sb.Env, sb.User, sb.FromSnapshot = rec.Env, rec.User, rec.ID
	return sb, nil
}

// startClones stores the records of new sandboxes and starts them as
// clones of snapshot snapID.
func (s *Server) startClones(ctx context.Context, snapID string, sbs []*store.Sandbox) ([]*store.Sandbox, error) {
	start := s.cfg.Now()
	ids := make([]string, 0, len(sbs))
	if len(sbs) > 0 {
		err := s.admit(sbs[0].Tenant, needs(sbs...), func() error {
			for _, sb := range sbs {
				if err := s.cfg.Store.CreateSandbox(ctx, sb); err != nil {
					return err
				}
				ids = append(ids, sb.ID)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	out, err := s.cfg.Node.StartClones(ctx, snapID, ids)
	if err != nil {
		s.metrics.createFailures.Inc()
		return out, err
	}
	for _, sb := range out {
		s.metrics.createSeconds.Observe(s.cfg.Now().Sub(start).Seconds())
		s.activity.touch(sb.ID, s.cfg.Now())
	}
	return out, nil
}

// Fork checkpoints running sandbox idOrName of p's tenant once (it keeps
// running) and starts count copies of it, each a new sandbox. The
// checkpoint is kept as snapshot snapshotName when that is set, removed
// otherwise. All or nothing: when a copy fails to start, the others are
// deleted and the error returned.
func (s *Server) Fork(ctx context.Context, p Principal, idOrName string, count int, snapshotName string) ([]*store.Sandbox, *store.SandboxSnapshot, error) {
	if count == 0 {
		count = 1
	}
	if count < 1 || count > rest.MaxForkCount {
		return nil, nil, errdefs.New(errdefs.InvalidArgument, "count must be between 1 and %d, got %d", rest.MaxForkCount, count)
	}
	src, err := s.Lookup(p, idOrName)
	if err != nil {
		return nil, nil, err
	}
	rec, err := s.snapshot(ctx, p, src, snapshotName, rest.SnapshotModeMemory)
	if err != nil {
		return nil, nil, err
	}
	if snapshotName == "" {
		tmp := rec.ID
		defer func() {
			if err := s.cfg.Node.DeleteSnapshot(context.WithoutCancel(ctx), tmp); err != nil {
				s.log.Warn("remove the checkpoint of a fork", "snapshot", tmp, "err", err)
			}
		}()
	}
	sbs := make([]*store.Sandbox, count)
	for i := range sbs {
		if sbs[i], err = s.cloneRecord(rest.CreateSandboxRequest{Timeout: ptr(src.TimeoutSec), TimeoutAction: src.TimeoutAction,
			IdleTimeout: src.IdleTimeoutSec, IdleAction: src.IdleAction, Metadata: src.Metadata}, p, rec); err != nil {
			return nil, nil, err
		}
	}
	out, err := s.startClones(ctx, rec.ID, sbs)
	if err != nil {
		for _, sb := range sbs {
			if derr := s.cfg.Node.Destroy(context.WithoutCancel(ctx), sb.ID); derr != nil {
				s.log.Warn("remove a copy of a failed fork", "sandbox", sb.ID, "err", derr)
			}
		}
		return nil, nil, err
	}
	if snapshotName == "" {
		rec = nil
	}
	return out, rec, nil
}

func ptr[T any](v T) *T { return &v }

func (s *Server) createSnapshot(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req rest.CreateSnapshotRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	rec, err := s.CreateSnapshot(r.Context(), p, req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, snapshotREST(rec))
}

func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request, p Principal) error {
	list, err := s.ListSnapshots(p)
	if err != nil {
		return err
	}
	out := rest.SnapshotList{Snapshots: make([]rest.Snapshot, 0, len(list))}
	for _, rec := range list {
		out.Snapshots = append(out.Snapshots, snapshotREST(rec))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) getSnapshot(w http.ResponseWriter, r *http.Request, p Principal) error {
	rec, err := s.LookupSnapshot(p, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, snapshotREST(rec))
}

func (s *Server) deleteSnapshot(w http.ResponseWriter, r *http.Request, p Principal) error {
	if err := s.DeleteSnapshot(r.Context(), p, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) forkSandbox(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req rest.ForkRequest
	if r.ContentLength != 0 { // an empty body forks one copy
		if err := decodeJSON(r, &req); err != nil {
			return err
		}
	}
	list, rec, err := s.Fork(r.Context(), p, r.PathValue("id"), req.Count, req.SnapshotName)
	if err != nil {
		return err
	}
	out := rest.ForkResponse{Sandboxes: make([]rest.Sandbox, 0, len(list))}
	for _, sb := range list {
		out.Sandboxes = append(out.Sandboxes, s.toREST(sb))
	}
	if rec != nil {
		out.Snapshot = rec.ID
	}
	return writeJSON(w, http.StatusCreated, out)
}

// snapshotREST is the API view of a snapshot record.
func snapshotREST(rec *store.SandboxSnapshot) rest.Snapshot {
	mode := rest.SnapshotModeMemory
	if rec.IsFilesystem() {
		mode = rest.SnapshotModeFilesystem
	}
	return rest.Snapshot{ID: rec.ID, Name: rec.Name, Sandbox: rec.Sandbox, Image: rec.Image, Mode: mode,
		FilesystemImage: rec.FilesystemImage, CPUs: rec.CPUs, MemoryMB: rec.MemoryMB, DiskMB: rec.DiskMB, SizeBytes: rec.Size,
		Node: rec.Node, CreatedAt: rec.CreatedAt}
}
