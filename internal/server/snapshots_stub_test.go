package server

import (
	"context"
	"fmt"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

// CreateSnapshot records a made-up snapshot of a running sandbox; the
// stub cannot snapshot filesystems.
func (n *stubNode) CreateSnapshot(ctx context.Context, rec *store.SandboxSnapshot) (*store.SandboxSnapshot, error) {
	if rec.IsFilesystem() {
		return nil, errdefs.New(errdefs.Unsupported, "runtime stub cannot snapshot a sandbox's filesystem")
	}
	sb, err := n.store.Snapshot().Sandbox(rec.Sandbox)
	if err != nil {
		return nil, err
	}
	if sb.State != store.StateRunning {
		return nil, errdefs.New(errdefs.FailedPrecondition, "sandbox %s is %s: only a running sandbox can be snapshotted", sb.ID, sb.State)
	}
	c := rec.Clone()
	c.Node, c.Runtime, c.Image, c.CPUs, c.MemoryMB, c.DiskMB = nodeID, "stub", sb.Image, sb.CPUs, sb.MemoryMB, sb.DiskMB
	c.Size, c.Digest, c.CreatedAt = 4096, "sha256:00", n.now()
	if err := n.store.CreateSandboxSnapshot(ctx, c); err != nil {
		return nil, err
	}
	return c, nil
}

func (n *stubNode) DeleteSnapshot(ctx context.Context, id string) error {
	return n.store.DeleteSandboxSnapshot(ctx, id)
}

// StartClones starts each sandbox as Start does.
func (n *stubNode) StartClones(ctx context.Context, snapID string, ids []string) ([]*store.Sandbox, error) {
	if _, err := n.store.Snapshot().SandboxSnapshot(snapID); err != nil {
		return nil, fmt.Errorf("clone: %w", err)
	}
	var out []*store.Sandbox
	for _, id := range ids {
		sb, err := n.Start(ctx, id)
		if err != nil {
			return out, err
		}
		out = append(out, sb)
	}
	return out, nil
}
