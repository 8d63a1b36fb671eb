package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/warmpool"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

// Recover settles every sandbox record of this node after a restart:
// sandboxes whose runtime processes are alive are reattached; the others are
// marked failed with the reason and their leftovers destroyed. Records caught
// mid-change (starting, stopping, suspending, resuming) are finished in the
// safe direction (see recoverSuspending, recoverResuming); suspended ones
// stay suspended. Sandboxes that no record names (build steps, claims
// whose record a crash prevented) are destroyed, and so are snapshots no
// record names.
func (n *Node) Recover(ctx context.Context) error {
	list, err := n.allOnNode()
	if err != nil {
		return err
	}
	for _, sb := range list {
		if err := n.recoverOne(ctx, sb); err != nil {
			return fmt.Errorf("recover sandbox %s: %w", sb.ID, err)
		}
	}
	if err := n.pruneObjects(); err != nil {
		return err
	}
	if err := n.pruneSnapshots(); err != nil {
		return err
	}
	if err := n.destroyOrphans(ctx); err != nil {
		return err
	}
	n.pruneNetworks()
	return nil
}

// pruneNetworks removes the networks no live sandbox has: those of
// sandboxes destroyed while den was down or whose create crashed. Spares'
// networks are their drivers' (each driver's New cleans up its dead
// instances' spares).
func (n *Node) pruneNetworks() {
	nets := n.cfg.Networks
	if nets == nil {
		return
	}
	snap := n.records.Snapshot()
	for _, id := range nets.IDs() {
		if strings.HasPrefix(id, warmpool.IDPrefix) {
			continue
		}
		if sb, err := snap.Sandbox(id); err == nil && !store.IsTerminal(sb.State) {
			continue
		}
		if err := nets.Teardown(id); err != nil {
			n.log.Warn("remove the network of a gone sandbox", "sandbox", id, "err", err)
		}
	}
}

// destroyOrphans destroys the sandboxes the runtimes list that no record
// names: build steps (a step's RunStep call ended with the process that
// made it) and claims a crash caught before their record was written
// (see StartClaimed). Drivers without driver.Lister cannot say which
// exist. Preconditions: no create or RunStep of this node is running
// (Recover runs before the node serves).
func (n *Node) destroyOrphans(ctx context.Context) error {
	ids, err := n.listRuntimes(ctx)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	snap := n.records.Snapshot()
	for _, id := range ids {
		if strings.HasPrefix(id, warmpool.IDPrefix) {
			continue // a driver's own spare
		}
		if _, err := snap.Sandbox(id); !errdefs.IsNotFound(err) {
			continue // a record's, or unknown: leave it
		}
		var errs []error
		for _, d := range n.drivers() {
			errs = append(errs, d.Destroy(ctx, id))
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("recover: destroy sandbox %s, which has no record: %w", id, err)
		}
		if strings.HasPrefix(id, stepIDPrefix) {
			n.log.Info("destroyed the sandbox of an interrupted build step", "step", id)
		} else {
			n.log.Info("destroyed a sandbox that has no record (its create was interrupted)", "sandbox", id)
		}
	}
	return nil
}

func (n *Node) allOnNode() ([]*store.Sandbox, error) {
	var out []*store.Sandbox
	snap := n.records.Snapshot()
	token := ""
	for {
		page, next, err := snap.Sandboxes(store.SandboxFilter{Node: n.cfg.ID, Limit: 500, PageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list sandboxes of node %s: %w", n.cfg.ID, err)
		}
		out = append(out, page...)
		if next == "" {
			return out, nil
		}
		token = next
	}
}

func (n *Node) recoverOne(ctx context.Context, sb *store.Sandbox) error {
	unlock := n.locks.lock(sb.ID)
	defer unlock()
	switch sb.State {
	case "running":
		return n.reattach(ctx, sb)
	case "pending", "starting":
		return n.fail(ctx, sb.ID, "den restarted while the sandbox was starting")
	case "stopping":
		if err := n.drv(sb.ID).Destroy(ctx, sb.ID); err != nil {
			return err
		}
		if n.snaps != nil {
			if err := n.snaps.Remove(sb.ID); err != nil {
				return err
			}
		}
		return n.records.DeleteSandbox(ctx, sb.ID)
	case store.StateSuspended:
		// Reattach the runtime's host state; a runtime that lost it is
		// no loss: the resume restores the sandbox from its snapshot.
		if err := n.recoverHandle(ctx, sb); err != nil {
			n.log.Info("the runtime no longer holds a suspended sandbox; its resume will restore it from the snapshot", "sandbox", sb.ID, "err", err)
		}
	case store.StateSuspending:
		return n.recoverSuspending(ctx, sb)
	case store.StateResuming:
		return n.recoverResuming(ctx, sb)
	}
	return nil
}

func (n *Node) reattach(ctx context.Context, sb *store.Sandbox) error {
	var h driver.Handle
	if err := json.Unmarshal(sb.Handle, &h); err != nil {
		return n.fail(ctx, sb.ID, "runtime state unreadable: "+err.Error())
	}
	if err := n.drv(sb.ID).Recover(ctx, &h); err != nil {
		n.log.Warn("sandbox not recoverable", "sandbox", sb.ID, "err", err)
		return n.fail(ctx, sb.ID, "sandbox processes were gone after den restarted: "+err.Error())
	}
	n.log.Info("sandbox reattached", "sandbox", sb.ID)
	n.watch(sb.ID)
	return nil
}

// fail destroys what is left of a sandbox and records it as failed.
func (n *Node) fail(ctx context.Context, id, reason string) error {
	if err := n.drv(id).Destroy(ctx, id); err != nil {
		n.log.Warn("destroy leftovers of failed sandbox", "sandbox", id, "err", err)
	}
	_, err := n.setState(ctx, id, func(s *store.Sandbox) {
		s.State, s.Reason, s.Handle = "failed", reason, nil
	})
	return err
}
