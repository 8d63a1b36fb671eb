package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

// keyView is the API form of k; current marks the caller's own key.
func keyView(k *store.APIKey, p Principal) rest.APIKey {
	return rest.APIKey{ID: k.ID, Name: k.Name, Tenant: k.Tenant, Admin: k.Admin, CreatedAt: k.CreatedAt, Current: k.ID == p.KeyID}
}

// keyTenant is the tenant a key request of p acts on: p's own when name
// is empty; another only for admins, and only one that exists.
func (s *Server) keyTenant(p Principal, name string) (string, error) {
	if name == "" || name == p.Tenant {
		return p.Tenant, nil
	}
	if !p.Admin {
		return "", errdefs.New(errdefs.NotFound, "tenant %s not found", name)
	}
	if _, err := s.cfg.Store.Snapshot().Tenant(name); err != nil {
		return "", err
	}
	return name, nil
}

// CreateAPIKey makes a key for a tenant and returns its secret, which
// den keeps only hashed.
func (s *Server) CreateAPIKey(ctx context.Context, p Principal, req rest.CreateAPIKeyRequest) (rest.CreateAPIKeyResponse, error) {
	var out rest.CreateAPIKeyResponse
	if req.Name != "" && !nameRE.MatchString(req.Name) {
		return out, errdefs.New(errdefs.InvalidArgument, "name %q is invalid: use 1-63 lowercase letters, digits and dashes", req.Name)
	}
	if req.Admin {
		if err := requireAdmin(p, "create admin keys"); err != nil {
			return out, err
		}
	}
	tenant, err := s.keyTenant(p, req.Tenant)
	if err != nil {
		return out, err
	}
	var secret, hash string
	switch req.Format {
	case "", rest.KeyFormatDen:
		secret, hash, err = NewAPIKey()
	case rest.KeyFormatE2B:
		secret, hash, err = NewE2BAPIKey()
	default:
		return out, errdefs.New(errdefs.InvalidArgument, "key format %q is unknown: use %q or %q", req.Format, rest.KeyFormatDen, rest.KeyFormatE2B)
	}
	if err != nil {
		return out, err
	}
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return out, err
	}
	k := &store.APIKey{ID: "key-" + hex.EncodeToString(b), Tenant: tenant, Name: req.Name, Hash: hash, Admin: req.Admin, CreatedAt: s.cfg.Now().UTC()}
	if err := s.cfg.Store.PutAPIKey(ctx, k); err != nil {
		return out, err
	}
	return rest.CreateAPIKeyResponse{Key: keyView(k, p), Secret: secret}, nil
}

// APIKeys lists the keys of tenant ("" p's own) as p may see them.
func (s *Server) APIKeys(p Principal, tenant string) ([]rest.APIKey, error) {
	tenant, err := s.keyTenant(p, tenant)
	if err != nil {
		return nil, err
	}
	keys := s.cfg.Store.Snapshot().APIKeys(tenant)
	out := make([]rest.APIKey, 0, len(keys))
	for _, k := range keys {
		out = append(out, keyView(k, p))
	}
	return out, nil
}

// RevokeAPIKey deletes a key by ID, or by name when one key of p's
// tenant has it: its secret stops working at once. Non-admins revoke
// their own tenant's keys, not admin keys; nobody revokes the last admin
// key (den would have no way left to manage it).
func (s *Server) RevokeAPIKey(ctx context.Context, p Principal, idOrName string) error {
	snap := s.cfg.Store.Snapshot()
	k, err := snap.APIKey(idOrName)
	if err != nil || (!p.Admin && k.Tenant != p.Tenant) {
		k = nil
		for _, c := range snap.APIKeys(p.Tenant) {
			if c.Name == idOrName {
				if k != nil {
					return errdefs.New(errdefs.InvalidArgument, "more than one key is named %s: revoke by ID (den key ls)", idOrName)
				}
				k = c
			}
		}
	}
	if k == nil {
		return errdefs.New(errdefs.NotFound, "api key %s not found", idOrName)
	}
	if k.Admin {
		if err := requireAdmin(p, "revoke admin keys"); err != nil {
			return err
		}
		admins := 0
		for _, c := range snap.APIKeys("") {
			if c.Admin {
				admins++
			}
		}
		if admins <= 1 {
			return errdefs.New(errdefs.FailedPrecondition, "key %s is the last admin key: create another admin key first", k.ID)
		}
	}
	return s.cfg.Store.DeleteAPIKey(ctx, k.ID)
}

func (s *Server) createAPIKey(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req rest.CreateAPIKeyRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	out, err := s.CreateAPIKey(r.Context(), p, req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, out)
}

func (s *Server) listAPIKeys(w http.ResponseWriter, r *http.Request, p Principal) error {
	out, err := s.APIKeys(p, r.URL.Query().Get("tenant"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) revokeAPIKey(w http.ResponseWriter, r *http.Request, p Principal) error {
	if err := s.RevokeAPIKey(r.Context(), p, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
