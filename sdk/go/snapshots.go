package den

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/denhq/den/api/rest"
)

func snapshotPath(id string) string { return "/v1/snapshots/" + url.PathEscape(id) }

// CreateSnapshot saves a running sandbox (memory, processes and files) as a
// snapshot; the sandbox keeps running. The snapshot outlives the sandbox;
// Create with CreateSandboxRequest.Snapshot starts new sandboxes from it.
func (c *Client) CreateSnapshot(ctx context.Context, req rest.CreateSnapshotRequest) (*rest.Snapshot, error) {
	var s rest.Snapshot
	if err := c.doJSON(ctx, http.MethodPost, "/v1/snapshots", nil, req, &s); err != nil {
		return nil, fmt.Errorf("snapshot sandbox %s: %w", req.Sandbox, err)
	}
	return &s, nil
}

// GetSnapshot returns the snapshot with the given ID or name.
func (c *Client) GetSnapshot(ctx context.Context, idOrName string) (*rest.Snapshot, error) {
	var s rest.Snapshot
	if err := c.doJSON(ctx, http.MethodGet, snapshotPath(idOrName), nil, nil, &s); err != nil {
		return nil, fmt.Errorf("get snapshot %s: %w", idOrName, err)
	}
	return &s, nil
}

// ListSnapshots returns every snapshot of the tenant, oldest first.
func (c *Client) ListSnapshots(ctx context.Context) ([]rest.Snapshot, error) {
	var l rest.SnapshotList
	if err := c.doJSON(ctx, http.MethodGet, "/v1/snapshots", nil, nil, &l); err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	return l.Snapshots, nil
}

// DeleteSnapshot deletes a snapshot; sandboxes started from it go on.
func (c *Client) DeleteSnapshot(ctx context.Context, idOrName string) error {
	if err := c.doJSON(ctx, http.MethodDelete, snapshotPath(idOrName), nil, nil, nil); err != nil {
		return fmt.Errorf("delete snapshot %s: %w", idOrName, err)
	}
	return nil
}

// Fork checkpoints the running sandbox with the given ID or name once (it
// keeps running) and starts req.Count copies of it, each a new sandbox
// whose processes continue from that point and whose writes are its own.
func (c *Client) Fork(ctx context.Context, idOrName string, req rest.ForkRequest) ([]*Sandbox, error) {
	var r rest.ForkResponse
	if err := c.doJSON(ctx, http.MethodPost, sandboxPath(idOrName)+"/fork", nil, req, &r); err != nil {
		return nil, fmt.Errorf("fork sandbox %s: %w", idOrName, err)
	}
	out := make([]*Sandbox, 0, len(r.Sandboxes))
	for _, s := range r.Sandboxes {
		out = append(out, c.handle(s, ""))
	}
	return out, nil
}

// SnapshotUsage reports the disk the tenant's snapshots take on the node
// (suspend snapshots of its sandboxes, its snapshot objects) and the
// node's totals.
func (c *Client) SnapshotUsage(ctx context.Context) (*rest.SnapshotUsage, error) {
	var u rest.SnapshotUsage
	if err := c.doJSON(ctx, http.MethodGet, "/v1/snapshots/usage", nil, nil, &u); err != nil {
		return nil, fmt.Errorf("snapshot usage: %w", err)
	}
	return &u, nil
}

// PruneSnapshots removes snapshot files nothing references (and, when
// req asks, old snapshot objects) and reports what went.
func (c *Client) PruneSnapshots(ctx context.Context, req rest.PruneSnapshotsRequest) (*rest.PruneSnapshotsResult, error) {
	var res rest.PruneSnapshotsResult
	if err := c.doJSON(ctx, http.MethodPost, "/v1/snapshots/prune", nil, req, &res); err != nil {
		return nil, fmt.Errorf("prune snapshots: %w", err)
	}
	return &res, nil
}
