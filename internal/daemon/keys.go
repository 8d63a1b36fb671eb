package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/denhq/den/internal/server"
	"github.com/denhq/den/internal/store"
)

// DefaultTenant owns the admin key den up creates.
const DefaultTenant = "default"

// ensureAdminKey returns the admin API key: the one recorded in the env file
// when the store still knows it, else a new one stored now.
func ensureAdminKey(ctx context.Context, st *store.Store, envFile string) (string, error) {
	if k := readEnvFile(envFile)["DEN_API_KEY"]; k != "" {
		if _, err := st.Snapshot().APIKeyByHash(server.HashAPIKey(k)); err == nil {
			return k, nil
		}
	}
	secret, hash, err := server.NewAPIKey()
	if err != nil {
		return "", fmt.Errorf("generate admin API key: %w", err)
	}
	key := &store.APIKey{ID: "admin-" + hash[:8], Tenant: DefaultTenant, Name: "admin", Hash: hash, Admin: true, CreatedAt: time.Now().UTC()}
	if err := st.PutAPIKey(ctx, key); err != nil {
		return "", fmt.Errorf("store admin API key: %w", err)
	}
	return secret, nil
}

// ensureE2BKey returns the E2B API key of the admin's tenant: the one in
// the env file when the store still knows it, else a new one stored now.
// It is an ordinary den API key whose secret has E2B's format, so the
// SDKs' key check passes.
func ensureE2BKey(ctx context.Context, st *store.Store, envFile string) (string, error) {
	if k := readEnvFile(envFile)["E2B_API_KEY"]; k != "" {
		if _, err := st.Snapshot().APIKeyByHash(server.HashAPIKey(k)); err == nil {
			return k, nil
		}
	}
	secret, hash, err := server.NewE2BAPIKey()
	if err != nil {
		return "", fmt.Errorf("generate E2B API key: %w", err)
	}
	key := &store.APIKey{ID: "e2b-" + hash[:8], Tenant: DefaultTenant, Name: "e2b", Hash: hash, Admin: true, CreatedAt: time.Now().UTC()}
	if err := st.PutAPIKey(ctx, key); err != nil {
		return "", fmt.Errorf("store E2B API key: %w", err)
	}
	return secret, nil
}

// ensureDefaultTenant records the tenant of the admin key, without
// limits, unless it exists.
func ensureDefaultTenant(ctx context.Context, st *store.Store) error {
	if _, err := st.Snapshot().Tenant(DefaultTenant); err == nil {
		return nil
	}
	if err := st.PutTenant(ctx, &store.Tenant{ID: DefaultTenant, CreatedAt: time.Now().UTC()}); err != nil {
		return fmt.Errorf("store the default tenant: %w", err)
	}
	return nil
}
