package node

import (
	"context"
	"errors"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

// DropLost stops the sandboxes the servers reported lost while this node
// was cut off from them (records failed with store.ReasonNodeLost that a
// runtime here still holds): the cluster has given them up, so they must
// not run on unseen. Their records stay, failed, until they are deleted.
// An agent calls it when its link comes back.
func (n *Node) DropLost(ctx context.Context) error {
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
	return errors.Join(errs...)
}

func (n *Node) dropLost(ctx context.Context, id string) error {
	unlock := n.locks.lock(id)
	defer unlock()
	for _, d := range n.drivers() {
		if _, err := d.Status(ctx, id); errdefs.IsNotFound(err) {
			continue
		}
		if err := d.Destroy(ctx, id); err != nil {
			return err
		}
		n.log.Info("stopped a sandbox the cluster reported lost", "sandbox", id, "runtime", d.Capabilities().Name)
	}
	if n.cfg.Networks != nil {
		if err := n.cfg.Networks.Teardown(id); err != nil && !errdefs.IsNotFound(err) {
			n.log.Warn("remove the network of a lost sandbox", "sandbox", id, "err", err)
		}
	}
	return nil
}
