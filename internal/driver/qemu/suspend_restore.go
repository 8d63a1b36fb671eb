package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/warmpool"
	"github.com/denhq/den/internal/errdefs"
)

// restoring is one Resume or Clone in progress: a VM started from a
// checkpoint (see suspend.go).
type restoring struct {
	d    *Driver
	spec driver.Spec
	sdir string // the sandbox's directory
	ckpt string // the checkpoint directory, only read
	m    manifest
	prev *state // Resume: the suspended sandbox's state; nil for a clone

	image, initramfs string
	memory           string   // the file backing the RAM
	shared           bool     // memory is mapped share=on (it is the RAM)
	tap              *os.File // the NIC (network.go), until QEMU has it
	proc             *vmProcess
	raw              []byte // the encoded state
}

// resumeSteps bring a suspended sandbox back in its own directory. Its
// state says suspended until the VM runs; the undo stack puts that back.
var resumeSteps = []step[*restoring]{
	{"find the guest kernel", (*restoring).findKernel},
	{"copy the disk overlay", (*restoring).copyDisk},
	{"prepare the memory", (*restoring).prepareMemory},
	{"attach the network", (*restoring).attachNetwork},
	{"start qemu", (*restoring).startQEMU},
	{"load the saved state", (*restoring).load},
	{"write state", (*restoring).writeState},
	{"wait for the guest agent", (*restoring).waitGuest},
}

// cloneSteps build a new sandbox from a checkpoint, with its own
// directory, disk overlay and hostname.
var cloneSteps = []step[*restoring]{
	{"find the guest kernel", (*restoring).findKernel},
	{"make sandbox dir", (*restoring).makeDir},
	{"copy the disk overlay", (*restoring).copyDisk},
	{"prepare the memory", (*restoring).prepareMemory},
	{"attach the network", (*restoring).attachNetwork},
	{"start qemu", (*restoring).startQEMU},
	{"load the saved state", (*restoring).load},
	{"write state", (*restoring).writeState},
	{"wait for the guest agent", (*restoring).waitGuest},
	{"set hostname", (*restoring).setHostname},
}

// Resume implements driver.Suspender.
func (d *Driver) Resume(ctx context.Context, spec driver.Spec, dir string) (*driver.Handle, error) {
	if err := checkID(spec.ID); err != nil {
		return nil, err
	}
	sdir := d.sandboxDir(spec.ID)
	st, err := readState(sdir)
	if err != nil {
		return nil, fmt.Errorf("resume sandbox %s: %w", spec.ID, err)
	}
	if st.Phase != phaseSuspended {
		return nil, errdefs.New(errdefs.FailedPrecondition, "resume sandbox %s: not suspended", spec.ID)
	}
	m, err := readManifest(dir)
	if err == nil && m.SandboxID != spec.ID {
		err = errdefs.New(errdefs.InvalidArgument, "%s holds a checkpoint of sandbox %s", dir, m.SandboxID)
	}
	if err == nil {
		err = m.fits(d, spec)
	}
	if err != nil {
		return nil, errdefs.Wrap(errdefs.KindOf(err), err, "resume sandbox %s", spec.ID)
	}
	// A QEMU that outlived its suspension (a quit that failed half-way)
	// goes now: its files are about to be replaced.
	if err := killVM(ctx, st.PID, sdir); err != nil {
		return nil, errdefs.Wrap(errdefs.Canceled, err, "resume sandbox %s", spec.ID)
	}
	r := &restoring{d: d, spec: spec, sdir: sdir, ckpt: dir, m: m, prev: &st}
	return d.restore(ctx, "resume sandbox", r, resumeSteps)
}

// Clone implements driver.Suspender. It claims a spare when a declared
// pool (SetPools) keeps clones of dir of spec's shape.
func (d *Driver) Clone(ctx context.Context, spec driver.Spec, dir string) (*driver.Handle, error) {
	if err := checkID(spec.ID); err != nil {
		return nil, err
	}
	switch {
	case spec.UpperDir != "":
		return nil, errdefs.New(errdefs.InvalidArgument, "clone into sandbox %s: the qemu runtime cannot capture an upper dir", spec.ID)
	case spec.MemoryMB <= 0 || spec.DiskMB <= 0 || spec.CPUs <= 0:
		return nil, errdefs.New(errdefs.InvalidArgument, "clone into sandbox %s: cpus, memory and disk must be positive", spec.ID)
	}
	sdir := d.sandboxDir(spec.ID)
	if _, err := os.Lstat(sdir); err == nil {
		return nil, errdefs.New(errdefs.AlreadyExists, "clone into sandbox %s: a sandbox with this id exists", spec.ID)
	}
	m, err := readManifest(dir)
	if err == nil {
		err = m.fits(d, spec)
	}
	if err != nil {
		return nil, errdefs.Wrap(errdefs.KindOf(err), err, "clone into sandbox %s", spec.ID)
	}
	if h, err := d.claim(ctx, spec, warmpool.CloneShapeOf(spec, dir)); h != nil || err != nil {
		return h, err // a declared pool of this checkpoint had a spare
	}
	r := &restoring{d: d, spec: spec, sdir: sdir, ckpt: dir, m: m}
	return d.restore(ctx, "clone into sandbox", r, cloneSteps)
}

// restore runs steps, undoing them on error. op names it in errors.
func (d *Driver) restore(ctx context.Context, op string, r *restoring, steps []step[*restoring]) (*driver.Handle, error) {
	begin := time.Now()
	if err := runSteps(ctx, d.log, op, r.spec.ID, r, steps); err != nil {
		d.dropChannel(r.spec.ID)
		return nil, err
	}
	d.log.Info("sandbox restored", "sandbox", r.spec.ID, "clone", r.prev == nil, "took", time.Since(begin))
	return &driver.Handle{ID: r.spec.ID, Driver: Name, Version: stateVersion, State: r.raw}, nil
}

// findKernel finds the kernel the checkpoint's VM booted: QEMU is started
// with it so the machine is the saved one (the running kernel itself is in
// the saved RAM).
func (r *restoring) findKernel(ctx context.Context) (func(context.Context) error, error) {
	k, err := r.d.cfg.Kernels.Get(r.m.Kernel)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.FailedPrecondition, err, "the checkpoint's guest kernel")
	}
	initrd, err := r.d.cfg.Kernels.Initramfs(k, r.d.cfg.GuestBinary)
	if err != nil {
		return nil, err
	}
	r.image, r.initramfs = k.Image(), initrd
	return nil, nil
}

// makeDir makes a clone's directory; Mkdir, not MkdirAll: a concurrent
// Clone or Create of the same ID fails here.
func (r *restoring) makeDir(ctx context.Context) (func(context.Context) error, error) {
	if err := os.Mkdir(r.sdir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, errdefs.New(errdefs.AlreadyExists, "a sandbox with this id exists")
		}
		return nil, err
	}
	return func(context.Context) error { return os.RemoveAll(r.sdir) }, nil
}

// copyDisk gives the VM its own copy of the checkpoint's disk overlay.
func (r *restoring) copyDisk(ctx context.Context) (func(context.Context) error, error) {
	dst := filepath.Join(r.sdir, diskName)
	if err := removeIfExists(dst); err != nil {
		return nil, err
	}
	undo := func(context.Context) error { return removeIfExists(dst) }
	return undo, copyFile(filepath.Join(r.ckpt, diskName), dst)
}

// prepareMemory chooses the file backing the RAM: a copy of the
// checkpoint's memory file for a resume (mapped share=on, it is the VM's
// own again), the checkpoint's file itself mapped share=off for a clone,
// and a new file the stream's RAM is loaded into when the checkpoint has
// no memory file.
func (r *restoring) prepareMemory(ctx context.Context) (func(context.Context) error, error) {
	own := filepath.Join(r.sdir, memoryName)
	if err := removeIfExists(own); err != nil {
		return nil, err
	}
	undo := func(context.Context) error { return removeIfExists(own) }
	switch {
	case r.m.RAMInStream:
		r.memory, r.shared = own, true
		return undo, nil
	case r.prev == nil:
		r.memory, r.shared = filepath.Join(r.ckpt, memoryName), false
		return nil, nil
	}
	r.memory, r.shared = own, true
	return undo, copyFile(filepath.Join(r.ckpt, memoryName), own)
}

// startQEMU starts the VM paused, waiting for the stream (-incoming
// defer), which it gets as incomingFD.
func (r *restoring) startQEMU(ctx context.Context) (func(context.Context) error, error) {
	stream, err := os.Open(filepath.Join(r.ckpt, streamName))
	if err != nil {
		return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "open the checkpoint's stream")
	}
	defer stream.Close() // QEMU has its own descriptor
	_ = os.Remove(filepath.Join(r.sdir, "console.log"))
	v := (&creation{d: r.d, spec: r.spec, dir: r.sdir, image: r.image, initramfs: r.initramfs}).vm()
	v.memory, v.memShared, v.incoming = r.memory, r.shared, stream
	if r.tap != nil {
		v.tap, v.netArg = r.tap, r.d.netArg()
		defer closeTap(&r.tap) // QEMU has its own descriptor
	}
	p, err := v.start()
	if err != nil {
		return nil, err
	}
	r.proc = p
	return func(ctx context.Context) error { return p.kill(ctx) }, nil
}

// loadTimeout bounds loading a checkpoint's stream (with the RAM in it, a
// few hundred MiB).
const loadTimeout = 2 * time.Minute

// load feeds the stream to QEMU and lets the VM continue. QEMU 7.2 exits
// when the stream does not load; the error then carries its log.
func (r *restoring) load(ctx context.Context) (func(context.Context) error, error) {
	q, err := dialQMPRetry(ctx, r.sdir, r.proc.exitStatus, r.d.cfg.StartTimeout)
	if err != nil {
		return nil, r.loadError(err)
	}
	defer q.Close()
	lctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	if err := q.setMigration(lctx, !r.m.RAMInStream, false); err != nil {
		return nil, r.loadError(err)
	}
	if err := q.exec(lctx, "migrate-incoming", map[string]any{"uri": fmt.Sprintf("fd:%d", incomingFD)}, nil); err != nil {
		return nil, r.loadError(err)
	}
	if err := q.waitMigration(lctx, r.proc.exitStatus); err != nil {
		return nil, r.loadError(err)
	}
	return nil, q.exec(ctx, "cont", nil, nil)
}

// loadError is err with QEMU's log when QEMU exited: a stream that did
// not load is a bad checkpoint (InvalidArgument).
func (r *restoring) loadError(err error) error {
	// After a failed load QEMU may still be on its way out.
	for i := 0; i < 100 && r.proc.exitStatus() == "" && errdefs.Is(err, errdefs.Unavailable); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if r.proc.exitStatus() == "" {
		return err
	}
	qlog, _ := os.ReadFile(filepath.Join(r.sdir, "qemu.log"))
	return errdefs.New(errdefs.InvalidArgument, "the checkpoint's state did not load (qemu: %s): %s", r.proc.exitStatus(), tail(qlog))
}

// writeState records the running VM (a resumed one keeps its StartedAt)
// and drops any channel on an old socket; a resume's undo puts the
// suspended state back.
func (r *restoring) writeState(ctx context.Context) (func(context.Context) error, error) {
	st := state{Dir: r.sdir, PID: r.proc.Pid, Accel: r.d.cfg.Accel, Kernel: r.m.Kernel, BaseDisk: r.m.BaseDisk,
		MemoryMB: r.m.MemoryMB, DiskMB: r.m.DiskMB, CPUs: r.m.CPUs, Memory: r.memory, MemoryPrivate: !r.shared,
		StartedAt: time.Now().UTC(), Network: r.m.Network}
	var undo func(context.Context) error
	if r.prev != nil {
		st.StartedAt = r.prev.StartedAt
		if r.prev.AgentSocket != "" {
			_ = os.Remove(filepath.Join(r.sdir, r.prev.AgentSocket)) // the suspended QEMU's, moved by a Recover
		}
		undo = func(context.Context) error {
			r.d.dropChannel(r.spec.ID)
			_, err := writeState(r.sdir, *r.prev)
			return err
		}
	}
	raw, err := writeState(r.sdir, st)
	r.raw = raw
	r.d.dropChannel(r.spec.ID)
	return undo, err
}

// agentPollTimeout bounds one /health request of waitGuest.
const agentPollTimeout = 2 * time.Second

// waitGuest polls the agent's /health until it answers, QEMU exits, ctx
// ends or StartTimeout passes. The restored guest takes a new session
// once it sees the host's; after several failed polls the host starts a
// new one (a session the guest missed the start of).
func (r *restoring) waitGuest(ctx context.Context) (func(context.Context) error, error) {
	deadline := time.Now().Add(r.d.cfg.StartTimeout)
	for failures := 1; ; failures++ {
		hctx, cancel := context.WithTimeout(ctx, agentPollTimeout)
		err := guestRequest(hctx, r.d.channelAt(r.spec.ID, r.sdir), http.MethodGet, "/health", nil, http.StatusOK, http.StatusNoContent)
		cancel()
		if err == nil {
			return nil, nil
		}
		if s := r.proc.exitStatus(); s != "" {
			console, _ := os.ReadFile(filepath.Join(r.sdir, "console.log"))
			return nil, errdefs.New(errdefs.Unavailable, "the VM stopped before its agent answered (qemu: %s); console: %s", s, tail(console))
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Now().After(deadline) {
			return nil, errdefs.New(errdefs.Unavailable, "the restored agent did not answer within %s: %v", r.d.cfg.StartTimeout, err)
		}
		if failures%3 == 0 {
			r.d.dropChannel(r.spec.ID)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// setHostname gives a clone its own hostname through the agent.
func (r *restoring) setHostname(ctx context.Context) (func(context.Context) error, error) {
	hostname := r.spec.Hostname
	if hostname == "" {
		hostname = r.spec.ID
	}
	body, _ := json.Marshal(map[string]string{"hostname": hostname})
	return nil, guestRequest(ctx, r.d.channelAt(r.spec.ID, r.sdir), http.MethodPost, "/init", body, http.StatusNoContent)
}
