package node

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/snapshot"
	"github.com/denhq/den/internal/store"
)

// reasonSuspendLost is the reason of a sandbox whose suspend a crash
// interrupted before its state was saved, and whose processes are gone.
const reasonSuspendLost = "den restarted while the sandbox was being suspended, before its state was saved"

// recoverSuspending settles a sandbox whose suspend a crash interrupted,
// by what is true on the host:
//   - the driver still runs it (the suspend had not stopped it): running;
//   - a snapshot newer than the record's is sealed (the crash came just
//     before the record was written): suspended with it;
//   - the driver reports it suspended and its files lie in the unsealed
//     directory (the crash came between the driver's suspend and the
//     seal): the snapshot is sealed now, suspended;
//   - otherwise its state is lost: failed with the reason.
func (n *Node) recoverSuspending(ctx context.Context, sb *store.Sandbox) error {
	// Let the runtime settle a checkpoint den's death cut short (it may
	// have left the sandbox running) before asking what it holds.
	_ = n.recoverHandle(ctx, sb)
	st, stErr := n.drv(sb.ID).Status(ctx, sb.ID)
	if stErr == nil && st.Running {
		if err := n.recoverHandle(ctx, sb); err != nil {
			return n.fail(ctx, sb.ID, "den restarted while the sandbox was being suspended, and it could not be reattached: "+err.Error())
		}
		if _, err := n.setState(ctx, sb.ID, func(s *store.Sandbox) { s.State = store.StateRunning }); err != nil {
			return err
		}
		n.watch(sb.ID)
		n.log.Info("interrupted suspend: the sandbox runs on", "sandbox", sb.ID)
		return nil
	}
	if n.snaps == nil {
		return n.fail(ctx, sb.ID, reasonSuspendLost)
	}
	sealed, unsealed, err := n.snaps.Generations(sb.ID)
	if err != nil {
		return err
	}
	var prev uint64
	if sb.Snapshot != nil {
		prev = sb.Snapshot.Generation
	}
	if len(sealed) > 0 && sealed[len(sealed)-1] > prev {
		ref, err := n.snaps.Inspect(sb.ID, sealed[len(sealed)-1])
		if err == nil {
			if stErr != nil || st.Reason != driver.ReasonSuspended {
				// The runtime does not hold it suspended: whatever is left
				// there goes; the next resume restores the snapshot.
				if err := n.drv(sb.ID).Destroy(ctx, sb.ID); err != nil {
					return fmt.Errorf("stop the runtime state of an interrupted suspend: %w", err)
				}
			}
			return n.adoptSnapshot(ctx, sb, ref)
		}
		n.log.Warn("interrupted suspend: the sealed snapshot is unusable", "sandbox", sb.ID, "err", err)
	}
	if len(unsealed) > 0 && stErr == nil && st.Reason == driver.ReasonSuspended {
		ref, err := n.sealLeftover(sb, unsealed[len(unsealed)-1])
		if err == nil {
			return n.adoptSnapshot(ctx, sb, ref)
		}
		n.log.Warn("interrupted suspend: sealing the runtime's files failed", "sandbox", sb.ID, "err", err)
	}
	return n.fail(ctx, sb.ID, reasonSuspendLost)
}

// sealLeftover seals the unsealed generation gen of sb, which the driver
// finished writing before a crash.
func (n *Node) sealLeftover(sb *store.Sandbox, gen uint64) (snapshot.Ref, error) {
	p, err := n.snaps.Pending(sb.ID, gen)
	if err != nil {
		return snapshot.Ref{}, err
	}
	img, err := n.cfg.Images.Rootfs(sb.Image)
	if err != nil {
		return snapshot.Ref{}, fmt.Errorf("resolve image %s: %w", sb.Image, err)
	}
	spec, err := json.Marshal(specOf(sb, img))
	if err != nil {
		return snapshot.Ref{}, err
	}
	return p.Seal(snapshot.Meta{Driver: n.drv(sb.ID).Capabilities().Name, Spec: spec, Created: n.cfg.Now()})
}

// adoptSnapshot records sb suspended with the snapshot ref and drops the
// other generations.
func (n *Node) adoptSnapshot(ctx context.Context, sb *store.Sandbox, ref snapshot.Ref) error {
	if _, err := n.setState(ctx, sb.ID, func(s *store.Sandbox) {
		s.State, s.Reason = store.StateSuspended, ""
		s.Snapshot = &store.SnapshotRef{Generation: ref.Generation, Size: ref.Size, Digest: ref.Digest}
		s.StopTimers(n.cfg.Now())
	}); err != nil {
		return err
	}
	if err := n.snaps.Prune(sb.ID, ref.Generation); err != nil {
		n.log.Warn("remove older snapshots", "sandbox", sb.ID, "err", err)
	}
	n.log.Info("interrupted suspend: the sandbox is suspended", "sandbox", sb.ID, "generation", ref.Generation)
	return nil
}

// recoverResuming settles a sandbox whose resume a crash interrupted: it
// is running when the driver runs it under the record's handle; otherwise
// it is suspended again (its snapshot is kept until the next suspend), and
// a sandbox the driver runs under a handle the record lacks is stopped
// first, so that the next resume restores it from the snapshot.
func (n *Node) recoverResuming(ctx context.Context, sb *store.Sandbox) error {
	if st, err := n.drv(sb.ID).Status(ctx, sb.ID); err == nil && st.Running {
		if err := n.recoverHandle(ctx, sb); err == nil {
			if _, err := n.setState(ctx, sb.ID, func(s *store.Sandbox) {
				s.State, s.Reason = store.StateRunning, ""
				s.RestartTimers(n.cfg.Now())
			}); err != nil {
				return err
			}
			n.watch(sb.ID)
			n.log.Info("interrupted resume: the sandbox runs", "sandbox", sb.ID)
			return nil
		}
	}
	// Whatever the runtime holds now (a restore den's death cut short, or
	// one that went on without it) is not what the record says: stop it.
	// The snapshot, which Destroy never touches, is the state; the next
	// resume restores it from there.
	if err := n.drv(sb.ID).Destroy(ctx, sb.ID); err != nil {
		return fmt.Errorf("stop the runtime state of an interrupted resume: %w", err)
	}
	_, err := n.setState(ctx, sb.ID, func(s *store.Sandbox) { s.State = store.StateSuspended })
	n.log.Info("interrupted resume: the sandbox is suspended", "sandbox", sb.ID)
	return err
}

// recoverHandle reattaches the driver to sb by its stored handle.
func (n *Node) recoverHandle(ctx context.Context, sb *store.Sandbox) error {
	var h driver.Handle
	if err := json.Unmarshal(sb.Handle, &h); err != nil {
		return errdefs.Wrap(errdefs.FailedPrecondition, err, "runtime state unreadable")
	}
	return n.drv(sb.ID).Recover(ctx, &h)
}

// pruneSnapshots removes the snapshots of sandboxes no record names and
// the unsealed or superseded generations of the others (failed ones
// excepted: what is left of their state stays until they are deleted).
func (n *Node) pruneSnapshots() error {
	if n.snaps == nil {
		return nil
	}
	ids, err := n.snaps.IDs()
	if err != nil {
		return fmt.Errorf("recover snapshots: %w", err)
	}
	snap := n.records.Snapshot()
	for _, id := range ids {
		sb, err := snap.Sandbox(id)
		switch {
		case errdefs.IsNotFound(err):
			err = n.snaps.Remove(id)
		case err != nil || sb.Node != n.cfg.ID || sb.State == store.StateFailed:
			continue
		case sb.Snapshot != nil:
			err = n.snaps.Prune(id, sb.Snapshot.Generation)
		default:
			err = n.snaps.Prune(id, 0)
		}
		if err != nil {
			return fmt.Errorf("recover snapshots: %w", err)
		}
	}
	return nil
}
