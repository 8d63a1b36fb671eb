package den

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/denhq/den/api/rest"
)

func tenantPath(name string) string { return "/v1/tenants/" + url.PathEscape(name) }

// CreateTenant creates a tenant (admin keys only).
func (c *Client) CreateTenant(ctx context.Context, req rest.CreateTenantRequest) (*rest.Tenant, error) {
	var t rest.Tenant
	if err := c.doJSON(ctx, http.MethodPost, "/v1/tenants", nil, req, &t); err != nil {
		return nil, fmt.Errorf("create tenant: %w", err)
	}
	return &t, nil
}

// GetTenant returns a tenant with its quota, rate limit and usage.
func (c *Client) GetTenant(ctx context.Context, name string) (*rest.Tenant, error) {
	var t rest.Tenant
	if err := c.doJSON(ctx, http.MethodGet, tenantPath(name), nil, nil, &t); err != nil {
		return nil, fmt.Errorf("get tenant %s: %w", name, err)
	}
	return &t, nil
}

// ListTenants returns every tenant (admin keys) or the key's own.
func (c *Client) ListTenants(ctx context.Context) ([]rest.Tenant, error) {
	var l []rest.Tenant
	if err := c.doJSON(ctx, http.MethodGet, "/v1/tenants", nil, nil, &l); err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	return l, nil
}

// UpdateTenant replaces a tenant's quota or rate limit (admin keys only).
func (c *Client) UpdateTenant(ctx context.Context, name string, req rest.UpdateTenantRequest) (*rest.Tenant, error) {
	var t rest.Tenant
	if err := c.doJSON(ctx, http.MethodPatch, tenantPath(name), nil, req, &t); err != nil {
		return nil, fmt.Errorf("update tenant %s: %w", name, err)
	}
	return &t, nil
}

// DeleteTenant deletes a tenant that holds nothing, with its keys.
func (c *Client) DeleteTenant(ctx context.Context, name string) error {
	if err := c.doJSON(ctx, http.MethodDelete, tenantPath(name), nil, nil, nil); err != nil {
		return fmt.Errorf("delete tenant %s: %w", name, err)
	}
	return nil
}

// CreateAPIKey makes an API key; the response holds its secret, shown
// this once.
func (c *Client) CreateAPIKey(ctx context.Context, req rest.CreateAPIKeyRequest) (*rest.CreateAPIKeyResponse, error) {
	var out rest.CreateAPIKeyResponse
	if err := c.doJSON(ctx, http.MethodPost, "/v1/keys", nil, req, &out); err != nil {
		return nil, fmt.Errorf("create api key: %w", err)
	}
	return &out, nil
}

// ListAPIKeys lists the keys of tenant ("" the key's own).
func (c *Client) ListAPIKeys(ctx context.Context, tenant string) ([]rest.APIKey, error) {
	q := url.Values{}
	if tenant != "" {
		q.Set("tenant", tenant)
	}
	var l []rest.APIKey
	if err := c.doJSON(ctx, http.MethodGet, "/v1/keys", q, nil, &l); err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return l, nil
}

// RevokeAPIKey deletes a key by ID (or unique name); it stops working at
// once.
func (c *Client) RevokeAPIKey(ctx context.Context, idOrName string) error {
	if err := c.doJSON(ctx, http.MethodDelete, "/v1/keys/"+url.PathEscape(idOrName), nil, nil, nil); err != nil {
		return fmt.Errorf("revoke api key %s: %w", idOrName, err)
	}
	return nil
}
