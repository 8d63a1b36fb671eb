package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/denhq/den/internal/driver/ckptdir"
	"github.com/denhq/den/internal/errdefs"
)

// Checkpoints (driver.Suspender).
//
// A VM's RAM is a memory-backend-file: the file "memory" in its directory,
// mapped share=on, so the RAM is that file's contents. A checkpoint pauses
// the VM (QMP stop) and migrates it into the checkpoint directory with the
// x-ignore-shared capability, so the stream ("state") holds the CPUs and
// devices but not the shared RAM; the RAM file and the disk overlay are
// taken as files while the VM is paused (files listed in suspend_files.go).
// Suspend renames them into the checkpoint directory (a copy where that
// is another file system) and QEMU quits; Checkpoint copies them and the
// VM continues (QMP cont). Copies are reflinks where the file system has
// them, else copies of the data ranges only (the RAM file is sparse).
//
// Restoring starts QEMU with the same machine and "-incoming defer", the
// stream as an inherited descriptor, and loads it (migrate-incoming
// fd:3); the VM continues with cont. Resume copies the memory file into
// the sandbox's directory and maps it share=on again, so a resumed VM is
// like a created one. Clone maps the checkpoint's memory file share=off:
// copy-on-write, the file never changes, and any number of clones share
// its page cache. A clone's RAM file therefore does not hold its RAM, and
// x-ignore-shared does not skip a private mapping: a checkpoint of a
// clone carries the RAM in the stream (the manifest says ram_in_stream),
// and a restore of it loads the RAM into a new share=on memory file.
//
// The disk overlay's backing file is the cached base disk in disks/ (the
// image's layers written into an ext4 file); a checkpoint records its path
// and a restore needs it to exist, as gVisor's need their image layers.
//
// The agent channel (channel.go) does not survive: its yamux session's
// state is in the guest's RAM. Before pausing, the host drops its end and
// waits until the guest closed the port (its session ended: QMP
// query-chardev's frontend-open), so the saved guest holds no session and
// takes the first one the restored VM's host opens. QEMU's migration of
// the virtio-serial port tells the restored guest the host side is closed
// where it had not yet seen that; a restore polls the agent until it
// answers, as a boot does.
//
// QEMU 7.2 has no file: migration URI; the stream goes to and from files
// as descriptors (getfd over the QMP socket, an inherited descriptor), so
// QEMU itself writes and closes them: with exec:cat, QEMU kills the
// helper when it closes the pipe, which may cut the stream's tail.

// Suspend implements driver.Suspender.
func (d *Driver) Suspend(ctx context.Context, id string, dir string) error {
	return d.save(ctx, "suspend", id, dir, true)
}

// Checkpoint implements driver.Suspender.
func (d *Driver) Checkpoint(ctx context.Context, id string, dir string) error {
	return d.save(ctx, "checkpoint", id, dir, false)
}

// saving is one Suspend or Checkpoint in progress.
type saving struct {
	d    *Driver
	id   string
	sdir string // the sandbox's directory
	dir  string // the checkpoint directory
	st   state
	stop bool // Suspend: QEMU quits
	q    *qmp
	left []string // files of sdir that were copied rather than moved
}

type saveStep struct {
	name string
	do   func(s *saving, ctx context.Context) (undo func(context.Context) error, err error)
}

// saveSteps write a checkpoint; each undo puts the VM back running.
var saveSteps = []saveStep{
	{"connect to the monitor", (*saving).connect},
	{"cut guest connections", (*saving).cutGuest},
	{"pause the VM", (*saving).pause},
	{"save the device state", (*saving).saveStream},
	{"save memory and disk", (*saving).saveFiles},
	{"write the manifest", (*saving).writeManifest},
	{"stop or continue the VM", (*saving).finish},
}

// save writes sandbox id's checkpoint into dir and, with stop, ends its
// QEMU and marks it suspended. op names it in errors.
func (d *Driver) save(ctx context.Context, op, id, dir string, stop bool) error {
	if err := checkID(id); err != nil {
		return err
	}
	s := &saving{d: d, id: id, sdir: d.sandboxDir(id), dir: dir, stop: stop}
	st, err := readState(s.sdir)
	if err != nil {
		return fmt.Errorf("%s sandbox %s: %w", op, id, err)
	}
	switch {
	case st.Phase == phaseSuspended:
		return errdefs.New(errdefs.FailedPrecondition, "%s sandbox %s: it is suspended", op, id)
	case !alive(st.PID, st.Dir):
		return errdefs.New(errdefs.FailedPrecondition, "%s sandbox %s: its VM is not running", op, id)
	case st.Memory == "":
		return errdefs.New(errdefs.FailedPrecondition, "%s sandbox %s: its VM predates file-backed RAM; recreate it", op, id)
	}
	if err := ckptdir.CheckEmptyDir(dir); err != nil {
		return errdefs.Wrap(errdefs.KindOf(err), err, "%s sandbox %s", op, id)
	}
	s.st = st
	begin := time.Now()
	var undo []func(context.Context) error
	defer func() {
		if s.q != nil {
			s.q.Close()
		}
	}()
	for _, step := range saveSteps {
		u, err := step.do(s, ctx)
		if u != nil {
			undo = append(undo, u)
		}
		if err != nil {
			s.undo(ctx, undo)
			kind := errdefs.KindOf(err)
			if ctx.Err() != nil {
				kind = errdefs.Canceled
			}
			return errdefs.Wrap(kind, err, "%s sandbox %s: %s", op, id, step.name)
		}
		d.log.Debug("checkpoint step", "sandbox", id, "step", step.name, "took", time.Since(begin))
	}
	d.log.Info("sandbox checkpointed", "sandbox", id, "stopped", stop, "ram_in_stream", s.ramInStream(), "took", time.Since(begin))
	return nil
}

// undo runs the undo stack of a failed save.
func (s *saving) undo(ctx context.Context, undo []func(context.Context) error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	for i := len(undo) - 1; i >= 0; i-- {
		if err := undo[i](rctx); err != nil {
			s.d.log.Warn("undo of a failed checkpoint", "sandbox", s.id, "err", err)
		}
	}
}

// ramInStream says the stream must carry the RAM: the memory file is a
// private mapping (a clone's) that does not hold it.
func (s *saving) ramInStream() bool { return s.st.MemoryPrivate }

func (s *saving) connect(ctx context.Context) (func(context.Context) error, error) {
	q, err := dialQMP(ctx, filepath.Join(s.sdir, "qmp.sock"))
	if err != nil {
		return nil, err
	}
	s.q = q
	return nil, nil
}

// cutGuest drops the host's end of the agent channel and waits until the
// guest closed its port, so the checkpoint holds no agent session (see
// the comment at the top). A guest that does not close it in time is
// checkpointed anyway: a restore's agent polls recover from a stale
// session, more slowly.
func (s *saving) cutGuest(ctx context.Context) (func(context.Context) error, error) {
	s.d.dropChannel(s.id)
	if err := s.q.waitPortClosed(ctx, "agent", portCloseTimeout); err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		s.d.log.Warn("checkpoint: the guest did not close its agent port", "sandbox", s.id, "err", err)
	}
	return nil, nil
}

func (s *saving) pause(ctx context.Context) (func(context.Context) error, error) {
	if err := s.q.exec(ctx, "stop", nil, nil); err != nil {
		return nil, err
	}
	return func(ctx context.Context) error { return s.q.exec(ctx, "cont", nil, nil) }, nil
}

// checkpointFD is the name QEMU's monitor knows the stream's file by.
const checkpointFD = "den-checkpoint"

// saveStream migrates the paused VM into the stream file, the shared RAM
// skipped, and waits until QEMU is done with it (run state postmigrate:
// a cont before that would race the migration's end).
func (s *saving) saveStream(ctx context.Context) (func(context.Context) error, error) {
	path := filepath.Join(s.dir, streamName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "create the stream file")
	}
	undo := func(context.Context) error { return removeIfExists(path) }
	defer f.Close() // QEMU has its own descriptor
	if err := s.q.setMigration(ctx, !s.ramInStream(), true); err != nil {
		return undo, err
	}
	if err := s.q.execFD(ctx, "getfd", map[string]any{"fdname": checkpointFD}, f); err != nil {
		return undo, err
	}
	if err := s.q.exec(ctx, "migrate", map[string]any{"uri": "fd:" + checkpointFD}, nil); err != nil {
		_ = s.q.exec(ctx, "closefd", map[string]any{"fdname": checkpointFD}, nil)
		return undo, err
	}
	if err := s.q.waitMigration(ctx, nil); err != nil {
		if ctx.Err() != nil {
			s.cancelMigration(context.WithoutCancel(ctx))
		}
		return undo, err
	}
	return undo, s.q.waitRunState(ctx, "postmigrate")
}

// cancelMigration cancels a migration in progress and waits (boundedly)
// for QEMU to let go of the stream.
func (s *saving) cancelMigration(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.q.exec(ctx, "migrate_cancel", nil, nil); err != nil {
		s.d.log.Warn("cancel a checkpoint's migration", "sandbox", s.id, "err", err)
		return
	}
	_ = s.q.waitMigration(ctx, nil)
}

// saveFiles takes the RAM file (unless the stream holds the RAM) and the
// disk overlay into the checkpoint: Suspend moves them, Checkpoint copies
// them (the VM goes on with its own).
func (s *saving) saveFiles(ctx context.Context) (func(context.Context) error, error) {
	srcs := map[string]string{diskName: filepath.Join(s.sdir, diskName)}
	if !s.ramInStream() {
		srcs[memoryName] = s.st.Memory
	}
	moved := map[string]string{} // dst -> src
	var copied []string
	undo := func(context.Context) error {
		var errs []error
		for dst, src := range moved {
			errs = append(errs, os.Rename(dst, src))
		}
		for _, dst := range copied {
			errs = append(errs, removeIfExists(dst))
		}
		return errors.Join(errs...)
	}
	for name, src := range srcs {
		dst := filepath.Join(s.dir, name)
		if !s.stop {
			if err := copyFile(src, dst); err != nil {
				return undo, err
			}
			copied = append(copied, dst)
			continue
		}
		ok, err := moveFile(src, dst)
		if err != nil {
			return undo, err
		}
		if ok {
			moved[dst] = src
		} else {
			copied = append(copied, dst)
			s.left = append(s.left, src)
		}
	}
	return undo, nil
}

func (s *saving) writeManifest(ctx context.Context) (func(context.Context) error, error) {
	m := manifest{SandboxID: s.id, Accel: s.st.Accel, Kernel: s.st.Kernel, BaseDisk: s.st.BaseDisk,
		MemoryMB: s.st.MemoryMB, DiskMB: s.st.DiskMB, CPUs: s.st.CPUs, RAMInStream: s.ramInStream(),
		Network: s.st.Network}
	path := filepath.Join(s.dir, manifestName)
	return func(context.Context) error { return removeIfExists(path) }, writeManifest(s.dir, m)
}

// finish lets a checkpointed VM continue, or marks a suspended one so and
// ends its QEMU. Once the state says suspended the checkpoint stands:
// a QEMU that does not quit is killed.
func (s *saving) finish(ctx context.Context) (func(context.Context) error, error) {
	if !s.stop {
		return nil, s.q.exec(ctx, "cont", nil, nil)
	}
	st := s.st
	st.Phase = phaseSuspended
	if _, err := writeState(s.sdir, st); err != nil {
		return nil, err
	}
	if err := s.quit(context.WithoutCancel(ctx)); err != nil {
		return nil, fmt.Errorf("end the suspended VM: %w", err)
	}
	for _, p := range append(s.left, filepath.Join(s.sdir, "qmp.sock"), filepath.Join(s.sdir, "qemu.pid")) {
		_ = os.Remove(p)
	}
	return nil, nil
}

// quitTimeout bounds the wait for QEMU to exit after quit.
const quitTimeout = 10 * time.Second

// quit asks QEMU to quit and waits for it, killing it when it lingers.
func (s *saving) quit(ctx context.Context) error {
	_ = s.q.exec(ctx, "quit", nil, nil) // it may close the connection before answering
	deadline := time.Now().Add(quitTimeout)
	for alive(s.st.PID, s.sdir) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return killVM(kctx, s.st.PID, s.sdir)
}

// removeIfExists removes path; a missing path is no error.
func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
