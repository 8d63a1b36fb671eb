package server

import (
	"context"
	"net/http"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

// Warm pools. The server records them (tenancy, names, validation, the
// node's memory budget); the node keeps their spares ready and the driver
// hands one out when a create has a pool's shape.

// CreatePool validates req and records a pool for p's tenant; the node
// starts filling it in the background.
func (s *Server) CreatePool(ctx context.Context, p Principal, req rest.CreatePoolRequest) (*store.Pool, error) {
	if req.Name != "" && !nameRE.MatchString(req.Name) {
		return nil, errdefs.New(errdefs.InvalidArgument, "name %q is invalid: use 1-63 lowercase letters, digits and dashes", req.Name)
	}
	if err := checkPoolSize(req.Size); err != nil {
		return nil, err
	}
	rec := &store.Pool{ID: "pool-" + newSandboxID()[:16], Name: req.Name, Tenant: p.Tenant, Size: req.Size, CreatedAt: s.cfg.Now().UTC()}
	switch {
	case req.Image != "" && req.Snapshot != "":
		return nil, errdefs.New(errdefs.InvalidArgument, "a pool has an image or a snapshot, not both")
	case req.Snapshot != "":
		if req.CPUs != 0 || req.MemoryMB != 0 || req.DiskMB != 0 || req.User != "" {
			return nil, errdefs.New(errdefs.InvalidArgument, "a snapshot pool takes its cpus, memory_mb, disk_mb and user from the snapshot: leave them unset")
		}
		if err := s.checkSnapshotsOn("", "snapshot"); err != nil {
			return nil, err
		}
		snap, err := s.LookupSnapshot(p, req.Snapshot)
		if err != nil {
			return nil, err
		}
		rec.Snapshot, rec.Image, rec.CPUs, rec.MemoryMB, rec.DiskMB, rec.User = snap.ID, snap.Image, snap.CPUs, snap.MemoryMB, snap.DiskMB, snap.User
		rec.Runtime = req.Runtime
		if !snap.IsFilesystem() { // a memory snapshot's clones run on its runtime
			if req.Runtime != "" && req.Runtime != snap.Runtime {
				return nil, errdefs.New(errdefs.InvalidArgument, "snapshot %s was taken on runtime %s: its sandboxes run there, not on %s", snap.ID, snap.Runtime, req.Runtime)
			}
			rec.Runtime = snap.Runtime
		}
	default:
		// The sizes and image a create with the same fields would get.
		c := rest.CreateSandboxRequest{Image: req.Image, CPUs: req.CPUs, MemoryMB: req.MemoryMB, DiskMB: req.DiskMB, User: req.User}
		c.ApplyDefaults()
		if err := validateCreate(c); err != nil {
			return nil, err
		}
		if _, err := s.cfg.Images.Get(c.Image); err != nil {
			return nil, err
		}
		if c.User != "" && !s.ImageHasUser(c.Image, c.User) {
			return nil, errdefs.New(errdefs.InvalidArgument, "user %q not found in image %s", c.User, c.Image)
		}
		rec.Image, rec.CPUs, rec.MemoryMB, rec.DiskMB, rec.User, rec.Runtime = c.Image, c.CPUs, c.MemoryMB, c.DiskMB, c.User, req.Runtime
	}
	rt, err := s.cfg.Node.Runtime(rec.Runtime)
	if err != nil {
		return nil, err
	}
	if !rt.Pool {
		return nil, errdefs.New(errdefs.Unsupported, "runtime %s keeps no warm pools", rt.Name)
	}
	rec.Runtime = rt.Name
	if err := s.checkPoolMemory(rec); err != nil {
		return nil, err
	}
	if err := s.cfg.Store.PutPool(ctx, rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// ResizePool sets the size of a pool of p's tenant.
func (s *Server) ResizePool(ctx context.Context, p Principal, idOrName string, size int) (*store.Pool, error) {
	if err := checkPoolSize(size); err != nil {
		return nil, err
	}
	rec, err := s.LookupPool(p, idOrName)
	if err != nil {
		return nil, err
	}
	rec.Size = size
	if err := s.checkPoolMemory(rec); err != nil {
		return nil, err
	}
	if err := s.cfg.Store.PutPool(ctx, rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// DeletePool removes a pool of p's tenant; the node destroys its spares.
// Sandboxes claimed from it are not affected.
func (s *Server) DeletePool(ctx context.Context, p Principal, idOrName string) error {
	rec, err := s.LookupPool(p, idOrName)
	if err != nil {
		return err
	}
	return s.cfg.Store.DeletePool(ctx, rec.ID)
}

// LookupPool finds a pool of p's tenant by ID or name; NotFound for one of
// another tenant, exactly as for one that does not exist.
func (s *Server) LookupPool(p Principal, idOrName string) (*store.Pool, error) {
	snap := s.cfg.Store.Snapshot()
	if rec, err := snap.Pool(idOrName); err == nil && rec.Tenant == p.Tenant {
		return rec, nil
	}
	if rec, err := snap.PoolByName(p.Tenant, idOrName); err == nil {
		return rec, nil
	}
	return nil, errdefs.New(errdefs.NotFound, "pool %s not found", idOrName)
}

// ListPools returns p's pools, oldest first.
func (s *Server) ListPools(p Principal) ([]*store.Pool, error) {
	return s.cfg.Store.Snapshot().Pools(p.Tenant)
}

func checkPoolSize(size int) error {
	if size < 0 || size > rest.MaxPoolSize {
		return errdefs.New(errdefs.InvalidArgument, "size must be between 0 and %d, got %d", rest.MaxPoolSize, size)
	}
	return nil
}

// checkPoolMemory is FailedPrecondition when rec (new or resized) would
// take the node's pools past its memory budget, counting every spare at
// its memory limit: spares wait idle, but each may grow to its limit once
// claimed, and the node must hold them all.
func (s *Server) checkPoolMemory(rec *store.Pool) error {
	budget, err := s.cfg.Node.PoolMemoryBudgetMB()
	if err != nil {
		return err
	}
	all, err := s.cfg.Store.Snapshot().Pools("")
	if err != nil {
		return err
	}
	need := int64(rec.Size) * rec.MemoryMB
	for _, other := range all {
		if other.ID != rec.ID {
			need += int64(other.Size) * other.MemoryMB
		}
	}
	if need > budget {
		return errdefs.New(errdefs.FailedPrecondition, "pools on node %s would hold %d MiB of sandbox memory (every spare at its memory limit), more than the %d MiB the node has for them: lower the size or memory_mb, or shrink another pool",
			s.cfg.Node.ID(), need, budget)
	}
	return nil
}

// poolForCreate turns a create that names a pool into the create of the
// pool's shape, which the node serves from the pool.
func (s *Server) poolForCreate(p Principal, req rest.CreateSandboxRequest) (rest.CreateSandboxRequest, error) {
	if req.Image != "" || req.Snapshot != "" || req.CPUs != 0 || req.MemoryMB != 0 || req.DiskMB != 0 || req.User != "" {
		return req, errdefs.New(errdefs.InvalidArgument, "a sandbox created from a pool takes its image, snapshot, cpus, memory_mb, disk_mb and user from the pool: leave them unset")
	}
	rec, err := s.LookupPool(p, req.Pool)
	if err != nil {
		return req, err
	}
	req.Pool = ""
	if rec.Runtime != "" {
		if req.Runtime != "" && req.Runtime != rec.Runtime {
			return req, errdefs.New(errdefs.InvalidArgument, "pool %s runs on runtime %s, not %s", rec.ID, rec.Runtime, req.Runtime)
		}
		req.Runtime = rec.Runtime
	}
	if rec.Snapshot != "" {
		req.Snapshot = rec.Snapshot
		return req, nil
	}
	req.Image, req.CPUs, req.MemoryMB, req.DiskMB, req.User = rec.Image, rec.CPUs, rec.MemoryMB, rec.DiskMB, rec.User
	return req, nil
}

// checkSnapshotUnpooled is FailedPrecondition when a pool keeps clones of
// snapshot id.
func (s *Server) checkSnapshotUnpooled(id string) error {
	all, err := s.cfg.Store.Snapshot().Pools("")
	if err != nil {
		return err
	}
	for _, rec := range all {
		if rec.Snapshot == id {
			return errdefs.New(errdefs.FailedPrecondition, "snapshot %s is used by pool %s: delete the pool first", id, rec.ID)
		}
	}
	return nil
}

func (s *Server) createPool(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req rest.CreatePoolRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	rec, err := s.CreatePool(r.Context(), p, req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, s.poolREST(rec, s.cfg.Node.PoolStatus()))
}

func (s *Server) listPools(w http.ResponseWriter, r *http.Request, p Principal) error {
	list, err := s.ListPools(p)
	if err != nil {
		return err
	}
	status := s.cfg.Node.PoolStatus()
	out := rest.PoolList{Pools: make([]rest.Pool, 0, len(list))}
	for _, rec := range list {
		out.Pools = append(out.Pools, s.poolREST(rec, status))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) getPool(w http.ResponseWriter, r *http.Request, p Principal) error {
	rec, err := s.LookupPool(p, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.poolREST(rec, s.cfg.Node.PoolStatus()))
}

func (s *Server) updatePool(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req rest.UpdatePoolRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Size == nil {
		return errdefs.New(errdefs.InvalidArgument, "size is required")
	}
	rec, err := s.ResizePool(r.Context(), p, r.PathValue("id"), *req.Size)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.poolREST(rec, s.cfg.Node.PoolStatus()))
}

func (s *Server) deletePool(w http.ResponseWriter, r *http.Request, p Principal) error {
	if err := s.DeletePool(r.Context(), p, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// poolREST is the API view of a pool record with the node's status of it.
func (s *Server) poolREST(rec *store.Pool, status map[string]PoolState) rest.Pool {
	st := status[rec.ID]
	return rest.Pool{ID: rec.ID, Name: rec.Name, Image: rec.Image, Snapshot: rec.Snapshot, Size: rec.Size,
		Ready: min(st.Ready, rec.Size), Waiting: st.Waiting,
		CPUs: rec.CPUs, MemoryMB: rec.MemoryMB, DiskMB: rec.DiskMB, User: rec.User, Runtime: s.poolRuntime(rec), CreatedAt: rec.CreatedAt}
}

// poolRuntime is the runtime pool rec's spares run on ("" in records of
// before pools had one: the default).
func (s *Server) poolRuntime(rec *store.Pool) string {
	if rec.Runtime != "" {
		return rec.Runtime
	}
	if rt, err := s.cfg.Node.Runtime(""); err == nil {
		return rt.Name
	}
	return ""
}
