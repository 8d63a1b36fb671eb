package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/store"
)

// cloneParallelism bounds the clones StartClones runs at once: a clone is
// mostly the runtime reading the checkpoint and restoring memory, which
// overlaps well on a few cores but not without bound.
const cloneParallelism = 4

// StartClones starts the sandboxes ids, whose records (state starting,
// this node, FromSnapshot snapID) are already in the store, as clones of
// snapshot object snapID: their processes continue from the saved point
// and their writes are their own. The snapshot's files are verified once,
// then the clones run in parallel (at most cloneParallelism at a time).
// Each record ends running with its handle, or failed with the reason.
// It returns the final records in the order of ids and, when any failed,
// the errors joined (the records of those that started are returned too).
// The image's command is not started again: it runs in the clone already.
// Calls for one snapshot are serialised with each other and with its
// DeleteSnapshot.
func (n *Node) StartClones(ctx context.Context, snapID string, ids []string) ([]*store.Sandbox, error) {
	unlock := n.locks.lock(objectLockKey(snapID)) // DeleteSnapshot waits for the clones
	defer unlock()
	rec, err := n.records.Snapshot().SandboxSnapshot(snapID)
	var dir string
	var spec driver.Spec
	if err == nil {
		dir, spec, err = n.verifyObject(rec)
	}
	if err != nil {
		for _, id := range ids {
			n.failStart(ctx, id, err)
		}
		return nil, err
	}
	out := make([]*store.Sandbox, len(ids))
	errs := make([]error, len(ids))
	sem := make(chan struct{}, cloneParallelism)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i], errs[i] = n.startClone(ctx, id, spec, dir)
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// startClone clones sandbox id from the checkpoint in dir, written from
// a sandbox of spec, and records the result.
func (n *Node) startClone(ctx context.Context, id string, spec driver.Spec, dir string) (*store.Sandbox, error) {
	unlock := n.locks.lock(id)
	defer unlock()
	sb, err := n.records.Snapshot().Sandbox(id)
	if err != nil {
		return nil, err
	}
	spec.ID, spec.Hostname = id, hostname(sb)
	var h *driver.Handle
	if s := n.suspender(id); s != nil {
		h, err = s.Clone(ctx, spec, dir)
	} else {
		err = n.errNoSnapshots(id)
	}
	var raw json.RawMessage
	if err == nil {
		if raw, err = json.Marshal(h); err != nil {
			_ = n.drv(id).Destroy(context.WithoutCancel(ctx), id)
		}
	}
	if err != nil {
		err = fmt.Errorf("clone sandbox %s from snapshot %s: %w", id, sb.FromSnapshot, err)
		n.failStart(ctx, id, err)
		return nil, err
	}
	sb, err = n.setState(context.WithoutCancel(ctx), id, func(s *store.Sandbox) {
		now := n.cfg.Now()
		s.State, s.Reason, s.Handle, s.StartedAt = store.StateRunning, "", raw, now
		if s.TimeoutSec > 0 {
			s.ExpiresAt = now.Add(time.Duration(s.TimeoutSec) * time.Second)
		}
	})
	if err == nil {
		n.watch(id)
	}
	return sb, err
}

// failStart records a sandbox whose start failed as failed, with the reason.
func (n *Node) failStart(ctx context.Context, id string, cause error) {
	n.log.Warn("sandbox start failed", "sandbox", id, "err", cause)
	if _, err := n.setState(context.WithoutCancel(ctx), id, func(s *store.Sandbox) {
		s.State, s.Reason = store.StateFailed, cause.Error()
	}); err != nil {
		n.log.Error("record failed sandbox", "sandbox", id, "err", err)
	}
}
