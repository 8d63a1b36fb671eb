package node

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/warmpool"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

// DropLost stops the sandboxes the servers reported lost while this node
// was cut off from them (records failed with store.ReasonNodeLost that a
// runtime here still holds): the cluster has given them up, so they must
// not run on unseen. Their records stay, failed, until they are deleted.
// An agent calls it when its link comes back, and after reattaching its
// sandboxes on start.
//
// It also stops orphans: sandboxes a runtime here holds that have no
// record at all (deleted while the node was cut off, so the delete could
// not reach it). The scheduler no longer counts them, so left running
// they would over-commit the node. The runtimes are listed before the
// records are read, and an orphan's record is read again under its lock
// before it is stopped: a claim (StartClaimed) holds that lock until its
// record is written. Spares and build steps have no records by design and
// are left alone.
func (n *Node) DropLost(ctx context.Context) error {
	running, err := n.listRuntimes(ctx)
	if err != nil {
		return err
	}
	list, err := n.allOnNode()
	if err != nil {
		return err
	}
	var errs []error
	for _, sb := range list {
		if sb.State != store.StateFailed || sb.Reason != store.ReasonNodeLost {
			continue
		}
		errs = append(errs, n.dropLost(ctx, sb.ID))
	}
	snap := n.records.Snapshot()
	for _, id := range running {
		if strings.HasPrefix(id, warmpool.IDPrefix) || strings.HasPrefix(id, stepIDPrefix) {
			continue
		}
		if _, err := snap.Sandbox(id); !errdefs.IsNotFound(err) {
			continue // recorded (or unknown for now: leave it)
		}
		errs = append(errs, n.dropOrphan(ctx, id))
	}
	return errors.Join(errs...)
}

// dropOrphan stops sandbox id, which had no record, unless it has one by
// the time its lock is taken (a claim recorded meanwhile).
func (n *Node) dropOrphan(ctx context.Context, id string) error {
	unlock := n.locks.lock(id)
	defer unlock()
	if _, err := n.records.Snapshot().Sandbox(id); !errdefs.IsNotFound(err) {
		return nil
	}
	n.log.Info("stopping a sandbox that has no record (deleted while this node was cut off)", "sandbox", id)
	return n.dropLostLocked(ctx, id)
}

// listRuntimes lists the sandboxes of every runtime that can list them.
func (n *Node) listRuntimes(ctx context.Context) ([]string, error) {
	var ids []string
	for _, d := range n.drivers() {
		l, ok := d.(driver.Lister)
		if !ok {
			continue
		}
		some, err := l.List(ctx)
		if err != nil {
			return nil, fmt.Errorf("list the sandboxes of runtime %s: %w", d.Capabilities().Name, err)
		}
		ids = append(ids, some...)
	}
	return ids, nil
}

func (n *Node) dropLost(ctx context.Context, id string) error {
	unlock := n.locks.lock(id)
	defer unlock()
	return n.dropLostLocked(ctx, id)
}

// dropLostLocked stops sandbox id on every runtime that holds it and
// removes its network. Preconditions: id's lock is held.
func (n *Node) dropLostLocked(ctx context.Context, id string) error {
	for _, d := range n.drivers() {
		if _, err := d.Status(ctx, id); errdefs.IsNotFound(err) {
			continue
		}
		if err := d.Destroy(ctx, id); err != nil {
			return err
		}
		n.log.Info("stopped a sandbox the cluster reported lost", "sandbox", id, "runtime", d.Capabilities().Name)
	}
	n.forgetRuntime(id)
	if n.cfg.Networks != nil {
		if err := n.cfg.Networks.Teardown(id); err != nil && !errdefs.IsNotFound(err) {
			n.log.Warn("remove the network of a lost sandbox", "sandbox", id, "err", err)
		}
	}
	return nil
}
