package server

import (
	"context"
	"net/http"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

// Tenants and API keys. Admin keys manage every tenant and key; a
// tenant's other keys see their own tenant and manage their own tenant's
// non-admin keys. Anything of another tenant is NotFound to them, as if
// it did not exist.

// lookupTenant returns tenant name as p may see it: NotFound for another
// tenant unless p is an admin. A tenant that p's key names but that has
// no record (keys of an older den) reads as one without limits.
func (s *Server) lookupTenant(p Principal, name string) (*store.Tenant, error) {
	if !p.Admin && name != p.Tenant {
		return nil, errdefs.New(errdefs.NotFound, "tenant %s not found", name)
	}
	t, err := s.cfg.Store.Snapshot().Tenant(name)
	if errdefs.IsNotFound(err) && name == p.Tenant {
		return &store.Tenant{ID: name}, nil
	}
	return t, err
}

// tenantView is the API form of t with its usage.
func (s *Server) tenantView(t *store.Tenant) (rest.Tenant, error) {
	u, err := usageOf(s.cfg.Store.Snapshot(), t.ID)
	if err != nil {
		return rest.Tenant{}, err
	}
	return rest.Tenant{
		Name:      t.ID,
		Quota:     rest.Quota{Sandboxes: t.Quota.Sandboxes, VCPUs: t.Quota.VCPUs, MemoryMB: t.Quota.MemoryMB, Snapshots: t.Quota.Snapshots},
		RateLimit: rest.RateLimit{PerSecond: t.RateLimit.PerSecond, Burst: t.RateLimit.Burst},
		Placement: rest.Placement{NodePools: append([]string{}, t.Placement.NodePools...), OverflowToShared: t.Placement.OverflowToShared},
		Usage:     rest.Quota{Sandboxes: u.Sandboxes, VCPUs: u.VCPUs, MemoryMB: u.MemoryMB, Snapshots: u.Snapshots},
		CreatedAt: t.CreatedAt,
	}, nil
}

// writeTenant writes t with its usage.
func (s *Server) writeTenant(w http.ResponseWriter, status int, t *store.Tenant) error {
	v, err := s.tenantView(t)
	if err != nil {
		return err
	}
	return writeJSON(w, status, v)
}

func storeQuota(q rest.Quota) store.Quota {
	return store.Quota{Sandboxes: q.Sandboxes, VCPUs: q.VCPUs, MemoryMB: q.MemoryMB, Snapshots: q.Snapshots}
}

func storeRate(r rest.RateLimit) store.RateLimit {
	return store.RateLimit{PerSecond: r.PerSecond, Burst: r.Burst}
}

// CreateTenant records a new tenant; admin keys only.
func (s *Server) CreateTenant(ctx context.Context, p Principal, req rest.CreateTenantRequest) (*store.Tenant, error) {
	if err := requireAdmin(p, "create tenants"); err != nil {
		return nil, err
	}
	if err := store.ValidateTenantName(req.Name); err != nil {
		return nil, err
	}
	if _, err := s.cfg.Store.Snapshot().Tenant(req.Name); err == nil {
		return nil, errdefs.New(errdefs.AlreadyExists, "tenant %s exists", req.Name)
	}
	t := &store.Tenant{ID: req.Name, CreatedAt: s.cfg.Now().UTC()}
	if req.Quota != nil {
		t.Quota = storeQuota(*req.Quota)
	}
	if req.RateLimit != nil {
		t.RateLimit = storeRate(*req.RateLimit)
	}
	if req.Placement != nil {
		t.Placement = store.Placement{NodePools: req.Placement.NodePools, OverflowToShared: req.Placement.OverflowToShared}
	}
	if err := s.cfg.Store.PutTenant(ctx, t); err != nil {
		return nil, err
	}
	return t, nil
}

// UpdateTenant replaces a tenant's quota or rate limit; admin keys only.
// Lowering a quota below what the tenant holds stops new use, it
// removes nothing.
func (s *Server) UpdateTenant(ctx context.Context, p Principal, name string, req rest.UpdateTenantRequest) (*store.Tenant, error) {
	if err := requireAdmin(p, "change tenants"); err != nil {
		return nil, err
	}
	t, err := s.cfg.Store.Snapshot().Tenant(name)
	if errdefs.IsNotFound(err) && name == p.Tenant {
		t, err = &store.Tenant{ID: name, CreatedAt: s.cfg.Now().UTC()}, nil
	}
	if err != nil {
		return nil, err
	}
	if req.Quota != nil {
		t.Quota = storeQuota(*req.Quota)
	}
	if req.RateLimit != nil {
		t.RateLimit = storeRate(*req.RateLimit)
	}
	if req.Placement != nil {
		t.Placement = store.Placement{NodePools: req.Placement.NodePools, OverflowToShared: req.Placement.OverflowToShared}
	}
	if err := s.cfg.Store.PutTenant(ctx, t); err != nil {
		return nil, err
	}
	return t, nil
}

// DeleteTenant removes a tenant that holds nothing (no sandboxes,
// snapshots or pools) with its API keys; admin keys only, and never the
// caller's own tenant.
func (s *Server) DeleteTenant(ctx context.Context, p Principal, name string) error {
	if err := requireAdmin(p, "delete tenants"); err != nil {
		return err
	}
	if name == p.Tenant {
		return errdefs.New(errdefs.FailedPrecondition, "tenant %s is the one of the key making this request: use an admin key of another tenant", name)
	}
	snap := s.cfg.Store.Snapshot()
	if _, err := snap.Tenant(name); err != nil {
		return err
	}
	u, err := usageOf(snap, name)
	if err != nil {
		return err
	}
	pools, err := snap.Pools(name)
	if err != nil {
		return err
	}
	if u.Sandboxes > 0 || u.Snapshots > 0 || len(pools) > 0 {
		return errdefs.New(errdefs.FailedPrecondition, "tenant %s still holds %d sandboxes, %d snapshots and %d pools: delete them first", name, u.Sandboxes, u.Snapshots, len(pools))
	}
	return s.cfg.Store.DeleteTenant(ctx, name)
}

func (s *Server) createTenant(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req rest.CreateTenantRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	t, err := s.CreateTenant(r.Context(), p, req)
	if err != nil {
		return err
	}
	return s.writeTenant(w, http.StatusCreated, t)
}

func (s *Server) listTenants(w http.ResponseWriter, _ *http.Request, p Principal) error {
	var list []*store.Tenant
	if p.Admin {
		var err error
		if list, err = s.cfg.Store.Snapshot().Tenants(); err != nil {
			return err
		}
	} else {
		t, err := s.lookupTenant(p, p.Tenant)
		if err != nil {
			return err
		}
		list = []*store.Tenant{t}
	}
	out := make([]rest.Tenant, 0, len(list))
	for _, t := range list {
		v, err := s.tenantView(t)
		if err != nil {
			return err
		}
		out = append(out, v)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) getTenant(w http.ResponseWriter, r *http.Request, p Principal) error {
	t, err := s.lookupTenant(p, r.PathValue("name"))
	if err != nil {
		return err
	}
	return s.writeTenant(w, http.StatusOK, t)
}

func (s *Server) updateTenant(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req rest.UpdateTenantRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	t, err := s.UpdateTenant(r.Context(), p, r.PathValue("name"), req)
	if err != nil {
		return err
	}
	return s.writeTenant(w, http.StatusOK, t)
}

func (s *Server) deleteTenant(w http.ResponseWriter, r *http.Request, p Principal) error {
	if err := s.DeleteTenant(r.Context(), p, r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
