package server

import (
	"context"
	"net/http"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/nodeproto"
	"github.com/denhq/den/internal/store"
)

// Join tokens admit den agents to the cluster (see internal/cluster).
// Admin keys only. The store keeps the secret's hash; the token's
// printed form, with the secret and the cluster CA's hash, is shown in
// the answer to its creation only.

// Cluster is what the API needs of the cluster's node gateway
// (internal/cluster.Server satisfies it). Nil in den up, whose only node
// is its local one.
type Cluster interface {
	// CAHash is the cluster CA's hash ("sha256:<hex>"), which join
	// tokens carry so that agents can check the server they join.
	CAHash() string
	// CAs is what node id last said of its CAs on a session with this
	// server (see carotate.NodeCAs).
	CAs(id string) (trust, issuer string, ok bool)
}

// Defaults and bounds of join tokens.
const (
	defaultTokenTTL = time.Hour
	maxTokenUses    = 100000
)

func (s *Server) requireCluster(what string) error {
	if s.cfg.Cluster == nil {
		return errdefs.New(errdefs.FailedPrecondition, "%s: this server has no node gateway (den up runs its own node; join tokens are for den server)", what)
	}
	return nil
}

// CreateJoinToken makes a join token; the answer holds its secret form.
func (s *Server) CreateJoinToken(ctx context.Context, p Principal, req rest.CreateJoinTokenRequest) (rest.JoinToken, error) {
	if err := requireAdmin(p, "create join tokens"); err != nil {
		return rest.JoinToken{}, err
	}
	if err := s.requireCluster("create join token"); err != nil {
		return rest.JoinToken{}, err
	}
	rec, err := tokenRecord(req, s.cfg.Now().UTC())
	if err != nil {
		return rest.JoinToken{}, err
	}
	tok, err := nodeproto.NewToken(s.cfg.Cluster.CAHash())
	if err != nil {
		return rest.JoinToken{}, err
	}
	rec.ID, rec.Hash = tok.ID, tok.SecretHash()
	if err := s.cfg.Store.PutJoinToken(ctx, rec); err != nil {
		return rest.JoinToken{}, err
	}
	v := tokenView(rec)
	v.Token = tok.String()
	return v, nil
}

// tokenRecord checks a request and makes the record, without ID and hash.
func tokenRecord(req rest.CreateJoinTokenRequest, now time.Time) (*store.JoinToken, error) {
	ttl := defaultTokenTTL
	if req.TTLSec != nil {
		if *req.TTLSec < 0 || *req.TTLSec > 10*365*24*3600 {
			return nil, errdefs.New(errdefs.InvalidArgument, "ttl_sec %d: give 0 (never expires) to ten years", *req.TTLSec)
		}
		ttl = time.Duration(*req.TTLSec) * time.Second
	}
	if req.Uses == 0 {
		req.Uses = 1
	}
	if req.Uses < 0 || req.Uses > maxTokenUses {
		return nil, errdefs.New(errdefs.InvalidArgument, "uses %d: give 1 to %d", req.Uses, maxTokenUses)
	}
	if err := nodeproto.ValidatePool(req.Pool); err != nil {
		return nil, err
	}
	if err := nodeproto.ValidateLabels(req.Labels); err != nil {
		return nil, err
	}
	switch req.Role {
	case "":
	case rest.TokenRoleServer:
		if req.Pool != "" || len(req.Labels) > 0 {
			return nil, errdefs.New(errdefs.InvalidArgument, "a server token takes no pool or labels: they are for agents")
		}
	default:
		return nil, errdefs.New(errdefs.InvalidArgument, "role %q: give \"\" (agents) or %q", req.Role, rest.TokenRoleServer)
	}
	rec := &store.JoinToken{Uses: req.Uses, Pool: req.Pool, Labels: req.Labels, Role: req.Role, CreatedAt: now}
	if ttl > 0 {
		rec.ExpiresAt = now.Add(ttl)
	}
	return rec, nil
}

func tokenView(t *store.JoinToken) rest.JoinToken {
	v := rest.JoinToken{ID: t.ID, Uses: t.Uses, Used: t.Used, Pool: t.Pool, Labels: t.Labels, Role: t.Role, CreatedAt: t.CreatedAt}
	if !t.ExpiresAt.IsZero() {
		e := t.ExpiresAt
		v.ExpiresAt = &e
	}
	return v
}

// createJoinToken answers POST /v1/tokens.
func (s *Server) createJoinToken(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req rest.CreateJoinTokenRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	v, err := s.CreateJoinToken(r.Context(), p, req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, v)
}

// listJoinTokens answers GET /v1/tokens.
func (s *Server) listJoinTokens(w http.ResponseWriter, _ *http.Request, p Principal) error {
	if err := requireAdmin(p, "list join tokens"); err != nil {
		return err
	}
	list, err := s.cfg.Store.Snapshot().JoinTokens()
	if err != nil {
		return err
	}
	out := rest.JoinTokenList{Tokens: []rest.JoinToken{}}
	for _, t := range list {
		out.Tokens = append(out.Tokens, tokenView(t))
	}
	return writeJSON(w, http.StatusOK, out)
}

// deleteJoinToken answers DELETE /v1/tokens/{id}: the token admits no
// more nodes; those it admitted stay.
func (s *Server) deleteJoinToken(w http.ResponseWriter, r *http.Request, p Principal) error {
	if err := requireAdmin(p, "delete join tokens"); err != nil {
		return err
	}
	if err := s.cfg.Store.DeleteJoinToken(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
