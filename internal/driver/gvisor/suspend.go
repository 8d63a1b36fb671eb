package gvisor

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/denhq/den/internal/driver/ckptdir"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/guest"
)

// Checkpoints (driver.Suspender).
//
// gVisor refuses to save a sandbox holding a host socket, and the guest
// agent holds two kinds: its listening socket on the --host-uds=create
// mount and every connection accepted on it. So the agent lets go of them
// around a checkpoint, told by `den-guest checkpoint-hook` (see
// internal/guest/checkpoint.go), which the driver runs inside the sandbox
// with `runsc exec` before each checkpoint (phase "save"). The agent then
// listens again by itself once the checkpoint is done, whether the
// sandbox ran on or is a restored copy: it waits on gVisor's
// /proc/gvisor/checkpoint, and says so by answering "armed".
//
// An agent of an older den answers the save without arming: for such a
// sandbox the driver sets the hook in the kernel as its "save/restore
// binary" (--save-restore-exec-argv on its first checkpoint; runsc lets a
// kernel be given one once, and a second time fails with "already set"),
// and runsc runs it after each restore ("restore") and after each
// checkpoint that leaves the sandbox running ("resume").
// sandboxState.CheckpointHook records that the kernel has it. That costs a
// process start in the sandbox (~20 ms) on every resume, clone and fork,
// which the armed agent saves.
//
// Every checkpoint is taken with --leave-running: a checkpoint that fails
// (a full disk) would otherwise kill the sandbox. After a successful one
// the sandbox runs on for a moment (the resume phase) before Suspend
// deletes it; what it does then is lost with it, as the checkpoint is the
// state a restore continues from. That is also why a sandbox whose root
// filesystem is a caller's UpperDir (on the host, not in the checkpoint)
// cannot be checkpointed: those writes would survive and disagree with it.

// hookArgv is the save/restore binary runsc runs in the sandbox.
var hookArgv = []string{guestBinaryPath, "checkpoint-hook"}

// hookTimeout bounds each run of the hook (runsc kills it after that and
// fails the checkpoint or restore); the agent answers in milliseconds.
const hookTimeout = time.Minute

// errHookAlreadySet is how runsc refuses to set the save/restore binary of
// a kernel that has one (a checkpoint that failed after setting it).
const errHookAlreadySet = "save/restore binary is already set"

// Suspend implements driver.Suspender.
func (d *Driver) Suspend(ctx context.Context, id string, dir string) error {
	return d.checkpoint(ctx, "suspend", id, dir, true)
}

// Checkpoint implements driver.Suspender.
func (d *Driver) Checkpoint(ctx context.Context, id string, dir string) error {
	return d.checkpoint(ctx, "checkpoint", id, dir, false)
}

// checkpoint writes sandbox id's checkpoint into dir and, with stop,
// deletes its runsc container and marks it suspended. op names it in
// errors.
func (d *Driver) checkpoint(ctx context.Context, op, id, dir string, stop bool) error {
	if err := checkID(id); err != nil {
		return err
	}
	// The checkpoint cuts guest connections; a claim's pending /init is
	// applied first, so the checkpoint holds it.
	if conn, _ := d.conns.take(ctx, id); conn != nil {
		conn.Close()
	}
	d.conns.drop(id)
	p := d.paths(id)
	st, err := d.checkpointable(ctx, op, id, p)
	if err != nil {
		return err
	}
	if err := ckptdir.CheckEmptyDir(dir); err != nil {
		return errdefs.Wrap(errdefs.KindOf(err), err, "%s sandbox %s", op, id)
	}
	if err := ctx.Err(); err != nil {
		return errdefs.Wrap(errdefs.Canceled, err, "%s sandbox %s", op, id)
	}
	begin := time.Now()
	st.Phase = phaseCheckpointing
	if _, err := writeState(p, st); err != nil {
		return fmt.Errorf("%s sandbox %s: %w", op, id, err)
	}
	if err := d.saveCheckpoint(ctx, id, p, &st, dir); err != nil {
		d.abortCheckpoint(context.WithoutCancel(ctx), id, p, st, dir)
		return fmt.Errorf("%s sandbox %s: %w", op, id, err)
	}
	if err := d.finishCheckpoint(ctx, id, p, st, dir, stop); err != nil {
		return fmt.Errorf("%s sandbox %s: %w", op, id, err)
	}
	d.log.Info("sandbox checkpointed", "sandbox", id, "stopped", stop, "took", time.Since(begin))
	return nil
}

// checkpointable returns the state of sandbox id if it can be
// checkpointed: NotFound, FailedPrecondition otherwise.
func (d *Driver) checkpointable(ctx context.Context, op, id string, p paths) (sandboxState, error) {
	st, err := readState(p)
	if err != nil {
		return st, fmt.Errorf("%s sandbox %s: %w", op, id, err)
	}
	if st.UpperDir != "" {
		return st, errdefs.New(errdefs.FailedPrecondition, "%s sandbox %s: its root filesystem is an upper dir on the host, which a checkpoint cannot hold", op, id)
	}
	if st.Phase != "" {
		return st, errdefs.New(errdefs.FailedPrecondition, "%s sandbox %s: it is %s", op, id, st.Phase)
	}
	oci, err := d.runsc.state(ctx, st.runtimeID(id))
	if err != nil && !errdefs.IsNotFound(err) {
		return st, fmt.Errorf("%s sandbox %s: %w", op, id, err)
	}
	if err != nil || oci.Status != "running" {
		return st, errdefs.New(errdefs.FailedPrecondition, "%s sandbox %s: not running", op, id)
	}
	return st, nil
}

// saveCheckpoint has the guest agent let go of its host sockets and runsc
// write the checkpoint into dir, the sandbox left running; st's
// CheckpointHook is updated to what the kernel has. runsc is never killed
// half-way (ctx is checked before it starts): the sandbox would go on
// writing files the caller then reads.
func (d *Driver) saveCheckpoint(ctx context.Context, id string, p paths, st *sandboxState, dir string) error {
	rid := st.runtimeID(id)
	args := []string{"checkpoint", "--image-path=" + dir, "--leave-running", "--compression=none"}
	armed, err := d.runHook(ctx, rid, "save")
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !armed && !st.CheckpointHook {
		// An older agent: the kernel gets the hook (runsc runs its save
		// phase again first, a no-op).
		hook := []string{"--save-restore-exec-argv=" + strings.Join(hookArgv, " "), "--save-restore-exec-timeout=" + hookTimeout.String()}
		_, err := d.runsc.output(context.WithoutCancel(ctx), append(append(args, hook...), rid)...)
		if err == nil || !strings.Contains(err.Error(), errHookAlreadySet) {
			st.CheckpointHook = err == nil
			return wrapRunsc(err)
		}
		removeCheckpointFiles(dir)
		st.CheckpointHook = true
	}
	_, err = d.runsc.output(context.WithoutCancel(ctx), append(args, rid)...)
	return wrapRunsc(err)
}

// wrapRunsc marks a runsc failure Unavailable (its message says why).
func wrapRunsc(err error) error {
	if err == nil {
		return nil
	}
	return errdefs.Wrap(errdefs.Unavailable, err, "runsc")
}

// runHook runs the checkpoint hook for phase in container rid, as runsc
// itself does around a checkpoint. armed reports that the agent will
// listen again by itself once the checkpoint after a save is done.
func (d *Driver) runHook(ctx context.Context, rid, phase string) (armed bool, err error) {
	args := append([]string{"exec", rid}, hookArgv...)
	out, err := d.runsc.output(ctx, append(args, phase)...)
	if err != nil {
		return false, errdefs.Wrap(errdefs.Unavailable, err, "checkpoint hook %s", phase)
	}
	return strings.Contains(string(out), guest.HookArmedLine), nil
}

// abortCheckpoint cleans up after a failed checkpoint: it removes runsc's
// files from dir, has the guest agent listen again (a no-op when runsc's
// resume phase did it) and clears the phase.
func (d *Driver) abortCheckpoint(ctx context.Context, id string, p paths, st sandboxState, dir string) {
	removeCheckpointFiles(dir)
	if _, err := d.runHook(ctx, st.runtimeID(id), "resume"); err != nil {
		d.log.Warn("guest agent after a failed checkpoint", "sandbox", id, "err", err)
	}
	st.Phase = ""
	if _, err := writeState(p, st); err != nil {
		d.log.Warn("clear checkpoint phase", "sandbox", id, "err", err)
	}
}

// finishCheckpoint writes the manifest and the sandbox's new state and,
// with stop, deletes the runsc container: the sandbox is suspended once
// its state says so, even when the deletion fails (Resume and Destroy
// delete it again).
func (d *Driver) finishCheckpoint(ctx context.Context, id string, p paths, st sandboxState, dir string, stop bool) error {
	if err := writeManifest(dir, id, st, bundleProcess(p)); err != nil {
		d.abortCheckpoint(context.WithoutCancel(ctx), id, p, st, dir)
		return err
	}
	if !stop {
		st.Phase = ""
		if _, err := writeState(p, st); err != nil {
			return err
		}
		// The sandbox runs on; an armed agent listens again by itself.
		return waitHealthy(ctx, time.Now().Add(d.cfg.StartTimeout), p)
	}
	st.Phase = phaseSuspended
	if _, err := writeState(p, st); err != nil {
		d.abortCheckpoint(context.WithoutCancel(ctx), id, p, st, dir)
		return err
	}
	_ = os.Remove(p.pidFile())
	if err := d.runsc.deleteForce(context.WithoutCancel(ctx), st.runtimeID(id)); err != nil {
		return errdefs.Wrap(errdefs.Unavailable, err, "delete the suspended runsc container")
	}
	return nil
}

// recoverCheckpointing abandons a checkpoint of sandbox id that the
// driver's process did not finish (it died): the sandbox runs on, so its
// guest agent listens again and its phase is cleared. A suspended
// sandbox's container, left when the process died before deleting it,
// is deleted. A no-op for a sandbox in any other phase.
func (d *Driver) recoverCheckpointing(ctx context.Context, id string, p paths) error {
	st, err := readState(p)
	if err != nil {
		return nil // Status reports a missing state
	}
	if st.Phase == phaseSuspended {
		// The suspend died between marking the sandbox suspended and
		// deleting its container: the container goes now, so that it
		// frees its memory and the resume can restore under its ID.
		return d.runsc.deleteForce(ctx, st.runtimeID(id))
	}
	if st.Phase != phaseCheckpointing {
		return nil
	}
	if _, err := d.runHook(ctx, st.runtimeID(id), "resume"); err != nil {
		d.log.Warn("guest agent after an interrupted checkpoint", "sandbox", id, "err", err)
	}
	st.Phase = ""
	_, err = writeState(p, st)
	return err
}
