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
