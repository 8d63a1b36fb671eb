package node

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/snapshot"
	"github.com/denhq/den/internal/store"
)

// suspendOp is the state of one Suspend.
type suspendOp struct {
	id      string
	sb      *store.Sandbox // the record as last read or written
	spec    driver.Spec
	pending *snapshot.Pending
	ref     snapshot.Ref
	// sealed is set once the snapshot is complete and durable: from then
	// on nothing removes it and the sandbox is suspended whatever fails.
	sealed bool
	// handle is set when a failed seal brought the sandbox back to life
	// from the unsealed files (a new driver handle).
	handle json.RawMessage
}

// Suspend saves the whole state of running sandbox id under the node's
// snapshot directory and stops it, releasing its CPU and memory. The record
// becomes suspended, names the snapshot, and its timers stop (see
// store.Sandbox.StopTimers). It returns the final record.
//
// Steps: check → mark suspending → create the snapshot dir → suspend on
// the driver → seal the snapshot (fsync, manifest, rename) → mark
// suspended → drop older snapshots. A failure before the driver stopped
// the sandbox leaves it running. A failure after, before the seal,
// resumes it from its unsealed files (running again, under a new
// handle); only when that fails too is it failed, with the reason. A sealed snapshot is never removed by a failure, and a
// crash at any point leaves a record Recover settles as running or
// suspended.
//
// Errors: Unsupported when suspend is off (see Capabilities),
// FailedPrecondition when the sandbox is not running, NotFound.
func (n *Node) Suspend(ctx context.Context, id string) (*store.Sandbox, error) {
	if n.suspender(id) == nil {
		return nil, n.errNoSuspend(id)
	}
	unlock := n.locks.lock(id)
	defer unlock()
	op := &suspendOp{id: id}
	if err := runOp(ctx, n, "suspend", op, n.suspendSteps()); err != nil {
		return nil, err
	}
	n.log.Info("sandbox suspended", "sandbox", id, "generation", op.ref.Generation, "bytes", op.ref.Size)
	return op.sb, nil
}

// Suspend and resume step names, for tests that stop at each.
const (
	stepCheck         = "check"
	stepMarkSuspend   = "mark suspending"
	stepCreateDir     = "create snapshot dir"
	stepDriverSuspend = "suspend on driver"
	stepSeal          = "seal snapshot"
	stepMarkSuspended = "mark suspended"
	stepDropOlder     = "drop older snapshots"
)

func (n *Node) suspendSteps() []opStep[suspendOp] {
	return []opStep[suspendOp]{
		{name: stepCheck, do: n.checkSuspend},
		{name: stepMarkSuspend, do: n.markSuspending, undo: n.settleSuspend},
		{name: stepCreateDir, do: n.createSnapshotDir, undo: n.abortSnapshotDir},
		{name: stepDriverSuspend, do: n.suspendOnDriver, undo: n.resumeFromPending},
		{name: stepSeal, do: n.sealSnapshot},
		{name: stepMarkSuspended, do: n.markSuspended},
		{name: stepDropOlder, do: n.dropOlderSnapshots},
	}
}

// errNoSuspend says why sandbox id cannot be suspended.
func (n *Node) errNoSuspend(id string) error {
	d := n.drv(id)
	if _, ok := d.(driver.Suspender); ok {
		return errdefs.New(errdefs.Unsupported, "node %s cannot suspend sandboxes: it has no snapshot directory", n.cfg.ID)
	}
	return errdefs.New(errdefs.Unsupported, "runtime %s cannot suspend sandboxes", d.Capabilities().Name)
}

func errNotRunning(id, state string) error {
	return errdefs.New(errdefs.FailedPrecondition, "sandbox %s is %s: only a running sandbox can be suspended", id, state)
}

// checkSuspend reads the record and resolves the driver spec the sandbox
// was created with, which the snapshot keeps; nothing changes yet.
func (n *Node) checkSuspend(ctx context.Context, op *suspendOp) error {
	sb, err := n.records.Snapshot().Sandbox(op.id)
	if err != nil {
		return err
	}
	if sb.State != store.StateRunning {
		return errNotRunning(op.id, sb.State)
	}
	img, err := n.cfg.Images.Rootfs(sb.Image)
	if err != nil {
		return fmt.Errorf("suspend sandbox %s: resolve image %s: %w", op.id, sb.Image, err)
	}
	op.sb, op.spec = sb, specOf(sb, img)
	return nil
}

func (n *Node) markSuspending(ctx context.Context, op *suspendOp) error {
	sb, err := n.transition(ctx, op.id, store.StateRunning, store.StateSuspending,
		func(state string) error { return errNotRunning(op.id, state) }, nil)
	if err != nil {
		return err
	}
	op.sb = sb
	return nil
}

// settleSuspend undoes "mark suspending" after a later step failed: the
// record follows what is true. A sealed snapshot makes it suspended; a
// sandbox the driver still (or again) runs makes it running; otherwise
// its state is lost and it is failed with the cause.
func (n *Node) settleSuspend(ctx context.Context, op *suspendOp, cause error) {
	if op.sealed {
		if err := n.markSuspended(ctx, op); err != nil {
			n.log.Error("record suspended sandbox; it stays suspending until den restarts", "sandbox", op.id, "err", err)
		}
		return
	}
	if st, err := n.drv(op.id).Status(ctx, op.id); err == nil && st.Running {
		if _, err := n.setState(ctx, op.id, func(s *store.Sandbox) {
			s.State = store.StateRunning
			if op.handle != nil {
				s.Handle = op.handle
			}
		}); err != nil {
			n.log.Error("record sandbox running after a failed suspend", "sandbox", op.id, "err", err)
		}
		if op.handle != nil {
			n.watch(op.id) // the suspend ended the old watcher's wait
		}
		return
	}
	n.log.Error("suspend failed and the sandbox stopped", "sandbox", op.id, "err", cause)
	if err := n.fail(ctx, op.id, "suspend failed and the sandbox's state was lost: "+cause.Error()); err != nil {
		n.log.Error("record failed sandbox", "sandbox", op.id, "err", err)
	}
}

// createSnapshotDir creates the directory of the next generation, past
// every generation the record or the disk knows.
func (n *Node) createSnapshotDir(ctx context.Context, op *suspendOp) error {
	sealed, unsealed, err := n.snaps.Generations(op.id)
	if err != nil {
		return fmt.Errorf("suspend sandbox %s: %w", op.id, err)
	}
	gen := slices.Max(append(append([]uint64{0}, sealed...), unsealed...))
	if op.sb.Snapshot != nil {
		gen = max(gen, op.sb.Snapshot.Generation)
	}
	p, err := n.snaps.Begin(op.id, gen+1)
	if err != nil {
		return fmt.Errorf("suspend sandbox %s: %w", op.id, err)
	}
	op.pending = p
	return nil
}

// abortSnapshotDir removes the unsealed directory unless it is the only
// copy of the sandbox's state (the driver no longer runs it).
func (n *Node) abortSnapshotDir(ctx context.Context, op *suspendOp, _ error) {
	if op.sealed {
		return
	}
	if st, err := n.drv(op.id).Status(ctx, op.id); err != nil || !st.Running {
		n.log.Warn("kept the unsealed snapshot of a sandbox that stopped", "sandbox", op.id, "dir", op.pending.Dir)
		return
	}
	if err := op.pending.Abort(); err != nil {
		n.log.Warn("remove unsealed snapshot", "sandbox", op.id, "err", err)
	}
}

func (n *Node) suspendOnDriver(ctx context.Context, op *suspendOp) error {
	if err := n.suspender(op.id).Suspend(ctx, op.id, op.pending.Dir); err != nil {
		return fmt.Errorf("suspend sandbox %s: %w", op.id, err)
	}
	return nil
}

// resumeFromPending undoes the driver's suspend when a later step failed
// before the snapshot was sealed: the driver stopped the sandbox and its
// complete files lie in the unsealed directory, so it is resumed from them
// rather than lost.
func (n *Node) resumeFromPending(ctx context.Context, op *suspendOp, cause error) {
	if op.sealed {
		return
	}
	if st, err := n.drv(op.id).Status(ctx, op.id); err != nil || st.Running || st.Reason != driver.ReasonSuspended {
		return // still running, or gone: settleSuspend records which
	}
	h, err := n.suspender(op.id).Resume(ctx, op.spec, op.pending.Dir)
	if err == nil {
		op.handle, err = json.Marshal(h)
	}
	if err != nil {
		n.log.Error("resume a sandbox from its unsealed snapshot after a failed suspend", "sandbox", op.id, "err", err)
		return
	}
	n.log.Warn("suspend failed after the runtime stopped the sandbox; it was resumed and runs on", "sandbox", op.id, "err", cause)
}

// sealSnapshot makes the snapshot durable and visible.
func (n *Node) sealSnapshot(ctx context.Context, op *suspendOp) error {
	spec, err := json.Marshal(op.spec)
	if err != nil {
		return fmt.Errorf("suspend sandbox %s: encode spec: %w", op.id, err)
	}
	ref, err := op.pending.Seal(snapshot.Meta{Driver: n.drv(op.id).Capabilities().Name, Spec: spec, Created: n.cfg.Now()})
	if err != nil {
		return fmt.Errorf("suspend sandbox %s: %w", op.id, err)
	}
	op.ref, op.sealed = ref, true
	return nil
}

func (n *Node) markSuspended(ctx context.Context, op *suspendOp) error {
	sb, err := n.transition(ctx, op.id, store.StateSuspending, store.StateSuspended,
		func(state string) error {
			return errdefs.New(errdefs.Conflict, "suspend sandbox %s: it became %s meanwhile", op.id, state)
		},
		func(s *store.Sandbox) {
			s.Reason = ""
			s.Snapshot = &store.SnapshotRef{Generation: op.ref.Generation, Size: op.ref.Size, Digest: op.ref.Digest}
			s.StopTimers(n.cfg.Now())
		})
	if err != nil {
		return fmt.Errorf("suspend sandbox %s: %w", op.id, err)
	}
	op.sb = sb
	return nil
}

// dropOlderSnapshots is best effort: a leftover is removed by the next
// suspend or Recover. The older generations leave the sandbox's directory
// at once; their files are deleted in the background (snapshot.Discard
// says why), which Close waits for.
func (n *Node) dropOlderSnapshots(ctx context.Context, op *suspendOp) error {
	deleteMoved, err := n.snaps.Discard(op.id, op.ref.Generation)
	if err != nil {
		n.log.Warn("remove older snapshots", "sandbox", op.id, "err", err)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		deleteMoved()
	}()
	return nil
}
