package server

import (
	"context"
	"net/http"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/sandboxnet"
	"github.com/denhq/den/internal/store"
)

// Sandbox networks: a create's "network" becomes the record's policy
// (validated and normalized here, enforced by the node's sandboxnet);
// PUT /v1/sandboxes/{id}/network replaces it on a live sandbox.

// networkPolicy validates a requested policy (nil: the default, internet
// on) and returns it as the store keeps it. InvalidArgument names a bad
// rule.
func networkPolicy(req *rest.NetworkPolicy) (*store.NetworkPolicy, error) {
	pol := sandboxnet.DefaultPolicy()
	if req != nil {
		pol = sandboxnet.Policy{Internet: req.InternetOn(), Allow: req.Allow, Deny: req.Deny}
	}
	norm, err := pol.Normalize()
	if err != nil {
		return nil, err
	}
	return &store.NetworkPolicy{Internet: norm.Internet, Allow: norm.Allow, Deny: norm.Deny}, nil
}

// networkREST is the API view of a stored policy; nil stays nil.
func networkREST(p *store.NetworkPolicy) *rest.NetworkPolicy {
	if p == nil {
		return nil
	}
	on := p.Internet
	return &rest.NetworkPolicy{Internet: &on, Allow: p.Allow, Deny: p.Deny}
}

// SetNetwork replaces the egress policy of a sandbox of p's tenant; it
// applies at once to a running or suspended one. FailedPrecondition for a
// sandbox without a network, or one that no longer runs.
func (s *Server) SetNetwork(ctx context.Context, p Principal, idOrName string, req rest.NetworkPolicy) (*store.Sandbox, error) {
	pol, err := networkPolicy(&req)
	if err != nil {
		return nil, err
	}
	sb, err := s.Inspect(p, idOrName)
	if err != nil {
		return nil, err
	}
	if store.IsTerminal(sb.State) {
		return nil, errdefs.New(errdefs.FailedPrecondition, "sandbox %s is %s", sb.ID, sb.State)
	}
	if sb.Network == nil {
		return nil, errdefs.New(errdefs.FailedPrecondition, "sandbox %s has no network (it was created before sandboxes had networks)", sb.ID)
	}
	return s.cfg.Node.SetNetwork(ctx, sb.ID, *pol)
}

func (s *Server) getNetwork(w http.ResponseWriter, r *http.Request, p Principal) error {
	sb, err := s.Inspect(p, r.PathValue("id"))
	if err != nil {
		return err
	}
	if sb.Network == nil {
		return errdefs.New(errdefs.NotFound, "sandbox %s has no network", sb.ID)
	}
	return writeJSON(w, http.StatusOK, networkREST(sb.Network))
}

func (s *Server) putNetwork(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req rest.NetworkPolicy
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	sb, err := s.SetNetwork(r.Context(), p, r.PathValue("id"), req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, networkREST(sb.Network))
}
