package den

import (
	"context"
	"fmt"
	"net/http"

	"github.com/denhq/den/api/rest"
)

// ClusterMembers lists the den servers of the raft cluster as the server
// answering sees them (admin keys only).
func (c *Client) ClusterMembers(ctx context.Context) (*rest.ClusterMemberList, error) {
	var list rest.ClusterMemberList
	if err := c.doJSON(ctx, http.MethodGet, "/v1/cluster/members", nil, nil, &list); err != nil {
		return nil, fmt.Errorf("list cluster members: %w", err)
	}
	return &list, nil
}

// ClusterCA is the cluster CA and where a rotation of it stands (admin
// keys only; den server only).
func (c *Client) ClusterCA(ctx context.Context) (*rest.ClusterCA, error) {
	var ca rest.ClusterCA
	if err := c.doJSON(ctx, http.MethodGet, "/v1/cluster/ca", nil, nil, &ca); err != nil {
		return nil, fmt.Errorf("get the cluster CA: %w", err)
	}
	return &ca, nil
}

// RotateClusterCA begins a rotation of the cluster CA (action
// rest.CARotateBegin) or aborts one (rest.CARotateAbort).
func (c *Client) RotateClusterCA(ctx context.Context, action string) (*rest.ClusterCA, error) {
	var ca rest.ClusterCA
	if err := c.doJSON(ctx, http.MethodPost, "/v1/cluster/ca/rotate", nil, rest.RotateClusterCARequest{Action: action}, &ca); err != nil {
		return nil, fmt.Errorf("rotate the cluster CA: %w", err)
	}
	return &ca, nil
}
