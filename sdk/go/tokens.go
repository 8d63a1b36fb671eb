package den

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/denhq/den/api/rest"
)

// CreateJoinToken makes a join token for den agent (admin keys only);
// the answer's Token field is its secret form, shown this once.
func (c *Client) CreateJoinToken(ctx context.Context, req rest.CreateJoinTokenRequest) (*rest.JoinToken, error) {
	var t rest.JoinToken
	if err := c.doJSON(ctx, http.MethodPost, "/v1/tokens", nil, req, &t); err != nil {
		return nil, fmt.Errorf("create join token: %w", err)
	}
	return &t, nil
}

// ListJoinTokens lists the join tokens, without their secrets.
func (c *Client) ListJoinTokens(ctx context.Context) ([]rest.JoinToken, error) {
	var l rest.JoinTokenList
	if err := c.doJSON(ctx, http.MethodGet, "/v1/tokens", nil, nil, &l); err != nil {
		return nil, fmt.Errorf("list join tokens: %w", err)
	}
	return l.Tokens, nil
}

// DeleteJoinToken deletes a join token; the nodes it admitted stay.
func (c *Client) DeleteJoinToken(ctx context.Context, id string) error {
	if err := c.doJSON(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil, nil); err != nil {
		return fmt.Errorf("delete join token %s: %w", id, err)
	}
	return nil
}

// DrainNode marks a cluster node draining (no new sandboxes), or clears
// the mark when drain is false, and returns the node.
func (c *Client) DrainNode(ctx context.Context, id string, drain bool) (*rest.Node, error) {
	op := "drain"
	if !drain {
		op = "undrain"
	}
	var n rest.Node
	if err := c.doJSON(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(id)+"/"+op, nil, nil, &n); err != nil {
		return nil, fmt.Errorf("%s node %s: %w", op, id, err)
	}
	return &n, nil
}
