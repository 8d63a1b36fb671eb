package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/denhq/den/internal/errdefs"
)

// Principal is who a request acts for.
type Principal struct {
	KeyID  string
	Tenant string
	Admin  bool
}

// APIKeyPrefix starts every den API key, so keys are recognisable in logs
// and secret scanners.
const APIKeyPrefix = "den_"

// NewAPIKey returns a fresh secret and the hash the store keeps of it.
func NewAPIKey() (secret, hash string, err error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	secret = APIKeyPrefix + hex.EncodeToString(b)
	return secret, HashAPIKey(secret), nil
}

// E2BKeyPrefix starts the E2B-format keys den issues for its E2B facade;
// the e2b SDKs accept only ^e2b_[0-9a-f]+$.
const E2BKeyPrefix = "e2b_"

// NewE2BAPIKey returns a fresh secret in E2B's format (e2b_ and 40 hex
// digits) and the hash the store keeps of it.
func NewE2BAPIKey() (secret, hash string, err error) {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	secret = E2BKeyPrefix + hex.EncodeToString(b)
	return secret, HashAPIKey(secret), nil
}

// HashAPIKey is the stored form of an API key secret.
func HashAPIKey(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Authenticate reads the API key from X-API-Key or "Authorization: Bearer"
// and returns whom it belongs to; Unauthenticated when it is missing or
// unknown. The guest protocol uses "Authorization: Basic" for its own
// purpose (the user to act as), so a Basic header is never taken as an API
// key.
func (s *Server) Authenticate(r *http.Request) (Principal, error) {
	key := r.Header.Get("X-API-Key")
	if key == "" {
		if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
			key = strings.TrimPrefix(a, "Bearer ")
		}
	}
	if key == "" {
		return Principal{}, errdefs.New(errdefs.Unauthenticated, "missing API key: send it in the X-API-Key header (see DEN_API_KEY in <data-dir>/env)")
	}
	k, err := s.cfg.Store.Snapshot().APIKeyByHash(HashAPIKey(key))
	if err != nil && s.caughtUp(r.Context()) {
		// A key made through another server of the cluster may not
		// have reached this one yet.
		k, err = s.cfg.Store.Snapshot().APIKeyByHash(HashAPIKey(key))
	}
	if err != nil {
		return Principal{}, errdefs.New(errdefs.Unauthenticated, "invalid API key")
	}
	if err := s.allow(k.Tenant); err != nil {
		return Principal{}, err
	}
	return Principal{KeyID: k.ID, Tenant: k.Tenant, Admin: k.Admin}, nil
}

// caughtUp reports whether this server was a cluster follower that has now
// applied every write acknowledged before (see store.Store.CatchUp): a
// lookup that missed is worth repeating. den up and the leader answer false.
func (s *Server) caughtUp(ctx context.Context) bool {
	ok, err := s.cfg.Store.CatchUp(ctx)
	if err != nil {
		s.log.Warn("catch up with the cluster's leader", "err", err)
	}
	return ok && err == nil
}
