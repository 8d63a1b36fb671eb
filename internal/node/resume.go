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

// resumeOp is the state of one Resume.
type resumeOp struct {
	id     string
	sb     *store.Sandbox
	dir    string
	spec   driver.Spec
	handle json.RawMessage // the driver's new handle
}

// Resume brings suspended sandbox id back from its snapshot and returns
// the running record: a new driver handle, the timers restarted with the
// life the sandbox had left (see store.Sandbox.RestartTimers).
//
// Steps: mark resuming → verify the snapshot (every file's size and
// sha256 against the manifest the record pins) → resume on the driver →
// mark running. A damaged or missing snapshot fails with a
// FailedPrecondition error naming the file, before the driver is asked;
// any failure leaves the sandbox suspended with its snapshot untouched.
//
// The snapshot is kept while the sandbox runs again, until its next
// suspend seals a newer one: if a crash interrupts the resume, or the
// driver lost the sandbox's host state, it is restored from it (by
// driver.Suspender.Clone under the same ID).
//
// Errors: Unsupported when suspend is off, FailedPrecondition when the
// sandbox is not suspended or its snapshot is damaged, NotFound.
func (n *Node) Resume(ctx context.Context, id string) (*store.Sandbox, error) {
	if n.suspender(id) == nil {
		return nil, n.errNoSuspend(id)
	}
	unlock := n.locks.lock(id)
	defer unlock()
	op := &resumeOp{id: id}
	if err := runOp(ctx, n, "resume", op, n.resumeSteps()); err != nil {
		return nil, err
	}
	n.watch(id)
	n.log.Info("sandbox resumed", "sandbox", id)
	return op.sb, nil
}

// Resume step names.
const (
	stepMarkResuming = "mark resuming"
	stepVerify       = "verify snapshot"
	stepDriverResume = "resume on driver"
	stepMarkRunning  = "mark running"
)

func (n *Node) resumeSteps() []opStep[resumeOp] {
	return []opStep[resumeOp]{
		{name: stepMarkResuming, do: n.markResuming, undo: n.settleResume},
		{name: stepVerify, do: n.verifySnapshot},
		{name: stepDriverResume, do: n.resumeOnDriver},
		{name: stepMarkRunning, do: n.markRunning},
	}
}

func errNotSuspended(id, state string) error {
	return errdefs.New(errdefs.FailedPrecondition, "sandbox %s is %s: only a suspended sandbox can be resumed", id, state)
}

func (n *Node) markResuming(ctx context.Context, op *resumeOp) error {
	var noSnapshot bool
	sb, err := n.setStateIf(ctx, op.id, func(s *store.Sandbox) bool {
		if s.State != store.StateSuspended {
			return false
		}
		if s.Snapshot == nil {
			noSnapshot = true
			return false
		}
		s.State = store.StateResuming
		return true
	})
	switch {
	case err != nil:
		return err
	case noSnapshot:
		return errdefs.New(errdefs.FailedPrecondition, "sandbox %s is suspended but its record names no snapshot", op.id)
	case sb.State != store.StateResuming:
		return errNotSuspended(op.id, sb.State)
	}
	op.sb = sb
	return nil
}

// settleResume undoes "mark resuming": running when the driver runs the
// sandbox with a handle this resume got, else suspended again.
func (n *Node) settleResume(ctx context.Context, op *resumeOp, cause error) {
	if st, err := n.drv(op.id).Status(ctx, op.id); err == nil && st.Running && op.handle != nil {
		if err := n.markRunning(ctx, op); err != nil {
			n.log.Error("record resumed sandbox; it stays resuming until den restarts", "sandbox", op.id, "err", err)
			return
		}
		n.watch(op.id)
		return
	}
	if _, err := n.setState(ctx, op.id, func(s *store.Sandbox) { s.State = store.StateSuspended }); err != nil {
		n.log.Error("record sandbox suspended after a failed resume", "sandbox", op.id, "err", err)
	}
	n.log.Warn("resume failed; the sandbox stays suspended", "sandbox", op.id, "err", cause)
}

// verifySnapshot checks the snapshot the record names and reads the
// driver spec it was taken with.
func (n *Node) verifySnapshot(ctx context.Context, op *resumeOp) error {
	ref := op.sb.Snapshot
	dir, m, err := n.snaps.Verify(op.id, snapshot.Ref{Generation: ref.Generation, Size: ref.Size, Digest: ref.Digest})
	if err != nil {
		return fmt.Errorf("resume sandbox %s: %w", op.id, err)
	}
	if err := json.Unmarshal(m.Spec, &op.spec); err != nil || op.spec.ID != op.id {
		return errdefs.New(errdefs.FailedPrecondition, "resume sandbox %s: snapshot %d holds no spec of this sandbox", op.id, ref.Generation)
	}
	op.dir = dir
	return nil
}

// resumeOnDriver resumes the sandbox. A driver that holds no suspended
// sandbox of that ID (its host state was lost, or a crash interrupted an
// earlier resume) gets the snapshot as a clone under the same ID: the
// snapshot is the sandbox's whole state.
func (n *Node) resumeOnDriver(ctx context.Context, op *resumeOp) error {
	h, err := n.suspender(op.id).Resume(ctx, op.spec, op.dir)
	if (errdefs.IsNotFound(err) || errdefs.Is(err, errdefs.FailedPrecondition)) && !n.driverHoldsSuspended(ctx, op.id) {
		n.log.Warn("the runtime holds no suspended sandbox; restoring it from its snapshot", "sandbox", op.id, "err", err)
		if err := n.drv(op.id).Destroy(ctx, op.id); err != nil {
			return fmt.Errorf("resume sandbox %s: clear runtime leftovers: %w", op.id, err)
		}
		h, err = n.suspender(op.id).Clone(ctx, op.spec, op.dir)
	}
	if err != nil {
		return fmt.Errorf("resume sandbox %s: %w", op.id, err)
	}
	raw, err := json.Marshal(h)
	if err != nil {
		_ = n.drv(op.id).Destroy(context.WithoutCancel(ctx), op.id)
		return fmt.Errorf("resume sandbox %s: encode handle: %w", op.id, err)
	}
	op.handle = raw
	return nil
}

func (n *Node) markRunning(ctx context.Context, op *resumeOp) error {
	sb, err := n.transition(ctx, op.id, store.StateResuming, store.StateRunning,
		func(state string) error {
			return errdefs.New(errdefs.Conflict, "resume sandbox %s: it became %s meanwhile", op.id, state)
		},
		func(s *store.Sandbox) {
			s.Reason, s.Handle = "", op.handle
			s.RestartTimers(n.cfg.Now())
		})
	if err != nil {
		return fmt.Errorf("resume sandbox %s: %w", op.id, err)
	}
	op.sb = sb
	return nil
}

// driverHoldsSuspended reports whether the runtime still has sandbox id as
// a suspended sandbox: then a failed Resume is a real failure (a missing
// guest binary, say), and destroying it to clone from the snapshot would
// throw away what the runtime still holds.
func (n *Node) driverHoldsSuspended(ctx context.Context, id string) bool {
	st, err := n.drv(id).Status(ctx, id)
	return err == nil && !st.Running && st.Reason == driver.ReasonSuspended
}
