package den

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/denhq/den/api/rest"
)

func poolPath(id string) string { return "/v1/pools/" + url.PathEscape(id) }

// CreatePool declares a warm pool: req.Size started, never-used sandboxes
// of one image (or snapshot) and size kept ready. A Create of that shape,
// or one naming the pool, claims a spare instead of booting.
func (c *Client) CreatePool(ctx context.Context, req rest.CreatePoolRequest) (*rest.Pool, error) {
	var p rest.Pool
	if err := c.doJSON(ctx, http.MethodPost, "/v1/pools", nil, req, &p); err != nil {
		return nil, fmt.Errorf("create pool: %w", err)
	}
	return &p, nil
}

// GetPool returns the pool with the given ID or name, with its ready count.
func (c *Client) GetPool(ctx context.Context, idOrName string) (*rest.Pool, error) {
	var p rest.Pool
	if err := c.doJSON(ctx, http.MethodGet, poolPath(idOrName), nil, nil, &p); err != nil {
		return nil, fmt.Errorf("get pool %s: %w", idOrName, err)
	}
	return &p, nil
}

// ListPools returns every pool of the tenant, oldest first.
func (c *Client) ListPools(ctx context.Context) ([]rest.Pool, error) {
	var l rest.PoolList
	if err := c.doJSON(ctx, http.MethodGet, "/v1/pools", nil, nil, &l); err != nil {
		return nil, fmt.Errorf("list pools: %w", err)
	}
	return l.Pools, nil
}

// ResizePool sets the number of spares a pool keeps ready.
func (c *Client) ResizePool(ctx context.Context, idOrName string, size int) (*rest.Pool, error) {
	var p rest.Pool
	if err := c.doJSON(ctx, http.MethodPatch, poolPath(idOrName), nil, rest.UpdatePoolRequest{Size: &size}, &p); err != nil {
		return nil, fmt.Errorf("resize pool %s: %w", idOrName, err)
	}
	return &p, nil
}

// DeletePool deletes a pool and its spares; sandboxes claimed from it go on.
func (c *Client) DeletePool(ctx context.Context, idOrName string) error {
	if err := c.doJSON(ctx, http.MethodDelete, poolPath(idOrName), nil, nil, nil); err != nil {
		return fmt.Errorf("delete pool %s: %w", idOrName, err)
	}
	return nil
}
