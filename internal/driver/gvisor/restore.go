package gvisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/warmpool"
	"github.com/denhq/den/internal/errdefs"
)

// resumeSteps bring a suspended sandbox back in its own directory. Its
// state says suspended until the restore succeeded; the undo stack puts
// that back. The OCI bundle is written anew: a sandbox claimed from the
// warm pool has the spare's (its paths under spares/, its cgroup named
// after the spare); a resumed one is named after itself.
var resumeSteps = []step{
	{"delete the checkpointed container", (*creation).deleteCheckpointed},
	{"readdress network", (*creation).readdressNetwork},
	{"mount rootfs", (*creation).remountRootfs},
	{"write OCI bundle", (*creation).writeResumeBundle},
	{"restore sandbox", (*creation).restore},
	{"write state", (*creation).writeResumeState},
	{"wait for guest agent", (*creation).waitGuest},
	{"apply CPU limit", (*creation).applyCPULimit},
}

// cloneSteps build a new sandbox as Create does, but restore it from a
// checkpoint instead of booting it, and give it its own hostname.
var cloneSteps = []step{
	{"make sandbox dir", (*creation).makeDir},
	{"set up network", (*creation).setupNetwork},
	{"prepare writable layer", (*creation).prepareUpper},
	{"mount rootfs", (*creation).mountRootfs},
	{"write OCI bundle", (*creation).writeCloneBundle},
	{"restore sandbox", (*creation).restore},
	{"write state", (*creation).writeState},
	{"wait for guest agent", (*creation).waitGuest},
	{"apply CPU limit", (*creation).applyCPULimit},
	{"set hostname", (*creation).setHostname},
}

// Resume implements driver.Suspender.
func (d *Driver) Resume(ctx context.Context, spec driver.Spec, dir string) (*driver.Handle, error) {
	if err := checkID(spec.ID); err != nil {
		return nil, err
	}
	p := d.paths(spec.ID)
	st, err := readState(p)
	if err != nil {
		return nil, fmt.Errorf("resume sandbox %s: %w", spec.ID, err)
	}
	if st.Phase != phaseSuspended {
		return nil, errdefs.New(errdefs.FailedPrecondition, "resume sandbox %s: not suspended", spec.ID)
	}
	m, err := readManifest(dir)
	if err != nil {
		return nil, fmt.Errorf("resume sandbox %s: %w", spec.ID, err)
	}
	if m.SandboxID != spec.ID {
		return nil, errdefs.New(errdefs.InvalidArgument, "resume sandbox %s: %s holds a checkpoint of sandbox %s", spec.ID, dir, m.SandboxID)
	}
	guestBin, err := d.guestBinaryFor(st.GuestBinary)
	if err != nil {
		return nil, fmt.Errorf("resume sandbox %s: %w", spec.ID, err)
	}
	c := &creation{d: d, spec: spec, p: p, image: dir, platform: st.Platform, rid: runtimeIDFor(spec.ID), prev: st, guestBin: guestBin}
	if err := d.restoreWith(ctx, c, resumeSteps); err != nil {
		return nil, err
	}
	return c.handle(), nil
}

// Clone implements driver.Suspender. It claims a spare when a declared
// pool (SetPools) keeps clones of dir of spec's shape.
func (d *Driver) Clone(ctx context.Context, spec driver.Spec, dir string) (*driver.Handle, error) {
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	if spec.UpperDir != "" {
		return nil, errdefs.New(errdefs.InvalidArgument, "clone into sandbox %s: a clone's root filesystem comes from the checkpoint; it cannot have an upper dir", spec.ID)
	}
	p := d.paths(spec.ID)
	if _, err := os.Stat(p.dir); err == nil {
		return nil, errdefs.New(errdefs.AlreadyExists, "clone into sandbox %s: a sandbox with this id exists", spec.ID)
	}
	m, err := readManifest(dir)
	if err != nil {
		return nil, fmt.Errorf("clone into sandbox %s: %w", spec.ID, err)
	}
	if err := m.fits(spec); err != nil {
		return nil, fmt.Errorf("clone into sandbox %s: %w", spec.ID, err)
	}
	if h, err := d.claim(ctx, spec, p, warmpool.CloneShapeOf(spec, dir)); h != nil || err != nil {
		return h, err // a declared pool of this checkpoint had a spare
	}
	guestBin, err := d.guestBinaryFor(m.GuestBinary)
	if err != nil {
		return nil, fmt.Errorf("clone into sandbox %s: %w", spec.ID, err)
	}
	c := &creation{d: d, spec: spec, p: p, image: dir, platform: m.Platform, rid: runtimeIDFor(spec.ID), guestBin: guestBin,
		process: m.Process}
	if err := d.restoreWith(ctx, c, cloneSteps); err != nil {
		return nil, err
	}
	return c.handle(), nil
}

// fits checks that a sandbox of spec can be restored from m.
func (m manifest) fits(spec driver.Spec) error {
	if !m.sameLayers(spec.Image.Layers) {
		return errdefs.New(errdefs.InvalidArgument, "the checkpoint's filesystem stands on other image layers than the spec's")
	}
	if uint64(spec.DiskMB)<<20 != m.DiskLimitBytes {
		return errdefs.New(errdefs.InvalidArgument, "the checkpoint's disk is %d MiB, the spec's %d MiB", m.DiskLimitBytes>>20, spec.DiskMB)
	}
	return nil
}

// restoreWith runs steps under a cold-start slot (a restore costs what a
// start does).
func (d *Driver) restoreWith(ctx context.Context, c *creation, steps []step) error {
	select {
	case d.coldStarts <- struct{}{}:
		defer func() { <-d.coldStarts }()
	case <-ctx.Done():
		return wrapCreate(c.spec.ID, "wait for a start slot", ctx.Err())
	}
	begin := time.Now()
	if err := d.runSteps(ctx, c, steps); err != nil {
		return err
	}
	d.log.Info("sandbox restored", "sandbox", c.spec.ID, "resumed", c.prev.Phase == phaseSuspended, "took", time.Since(begin))
	return nil
}

// deleteCheckpointed deletes the runsc container the sandbox was
// checkpointed from when it is still there: a suspend saves with
// --leave-running, marks the sandbox suspended, then deletes it, and den
// may have died between the two. Its state is in the checkpoint; what
// still runs there would make the restore under the same ID fail.
func (c *creation) deleteCheckpointed(ctx context.Context) (func(context.Context) error, error) {
	if err := c.d.runsc.deleteForce(ctx, c.prev.runtimeID(c.spec.ID)); err != nil {
		return nil, errdefs.Wrap(errdefs.Unavailable, err, "delete the container the sandbox was checkpointed from")
	}
	if c.rid != c.prev.runtimeID(c.spec.ID) {
		if err := c.d.runsc.deleteForce(ctx, c.rid); err != nil {
			return nil, errdefs.Wrap(errdefs.Unavailable, err, "delete a container left under %s", c.rid)
		}
	}
	return nil, nil
}

// remountRootfs mounts the host overlay of a suspended sandbox unless it
// is still mounted (it stays mounted while suspended, until a reboot).
func (c *creation) remountRootfs(ctx context.Context) (func(context.Context) error, error) {
	mounted, err := isMountPoint(c.p.rootfs())
	if err != nil || mounted {
		return nil, err
	}
	return nil, c.overlay().mount(c.p)
}

// writeResumeBundle writes the bundle of a resume with the process and
// hostname of the bundle the sandbox last ran with: runsc restore refuses
// a process whose args or env differ from the checkpoint's, and a sandbox
// claimed from the warm pool booted as the spare (the image's user and
// env; the claim set the spec's through the guest agent).
func (c *creation) writeResumeBundle(ctx context.Context) (func(context.Context) error, error) {
	spec := ociSpec(c.d.cfg, c.spec, c.p, c.guestBinary(), c.net)
	data, err := os.ReadFile(filepath.Join(c.p.dir, "config.json"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read OCI spec: %w", err)
	}
	if err == nil {
		var old specs.Spec
		if err := json.Unmarshal(data, &old); err != nil {
			return nil, fmt.Errorf("decode OCI spec: %w", err)
		}
		if old.Process != nil {
			spec.Process, spec.Hostname = old.Process, old.Hostname
		}
	}
	return nil, writeSpec(spec, c.p)
}

// writeCloneBundle writes a clone's bundle with the process of the
// checkpoint's sandbox (its args and env must match the checkpoint's; a
// sandbox claimed from the warm pool ran as the spare); the clone's own
// hostname is set through the guest agent afterwards.
func (c *creation) writeCloneBundle(ctx context.Context) (func(context.Context) error, error) {
	spec := ociSpec(c.d.cfg, c.spec, c.p, c.guestBinary(), c.net)
	if c.process != nil {
		spec.Process = c.process
	}
	return nil, writeSpec(spec, c.p)
}

// bundleProcess is the OCI process in the sandbox's config.json, or nil.
func bundleProcess(p paths) *specs.Process {
	data, err := os.ReadFile(filepath.Join(p.dir, "config.json"))
	if err != nil {
		return nil
	}
	var s specs.Spec
	if json.Unmarshal(data, &s) != nil {
		return nil
	}
	return s.Process
}

// restore runs `runsc restore --detach` from the checkpoint, with the
// flags a start has (on the checkpoint's platform). The guest agent
// listens again once runsc's restore phase of the checkpoint hook ran,
// which waitGuest waits for.
func (c *creation) restore(ctx context.Context) (func(context.Context) error, error) {
	_ = os.Remove(c.p.socket()) // the agent removes a stale one too, through the gofer
	args := c.d.runFlagsOn(c.platform, c.p, c.spec, c.net)
	args = append(args, "restore", "--image-path="+c.image, "--detach", "--bundle", c.p.dir, "--pid-file", c.p.pidFile(), c.rid)
	undo := func(ctx context.Context) error {
		err := c.d.runsc.deleteForce(ctx, c.rid)
		// A restore that failed early leaves no container but may leave
		// its cgroup.
		removeEmptyCgroup(cgroupPath(c.d.cfg, c.spec.ID))
		return err
	}
	if err := c.d.runsc.detached(ctx, c.p.log(), args...); err != nil {
		if ctxErr(err) {
			return undo, err
		}
		return undo, errdefs.Wrap(errdefs.Unavailable, err, "restore runsc")
	}
	return undo, nil
}

// writeResumeState marks the sandbox running again, under the runtime ID
// and cgroup it was restored with (named after its ID, also for one that
// was claimed from the warm pool or created by an older version); its
// undo marks it suspended again.
func (c *creation) writeResumeState(ctx context.Context) (func(context.Context) error, error) {
	st := c.prev
	st.Phase, st.CheckpointHook, st.RuntimeID, st.GuestBinary = "", true, c.rid, c.guestBinary()
	st.Cgroup, st.CPUQuotaUS = cgroupPath(c.d.cfg, c.spec.ID), cpuQuotaUS(c.spec)
	raw, err := writeState(c.p, st)
	c.raw = raw
	undo := func(context.Context) error {
		_, err := writeState(c.p, c.prev)
		return err
	}
	return undo, err
}

// setHostname gives a clone its own hostname. runsc restores the new OCI
// spec's hostname only where nothing in the sandbox changed it, and the
// guest agent did in every sandbox claimed from the warm pool.
func (c *creation) setHostname(ctx context.Context) (func(context.Context) error, error) {
	hostname := c.spec.Hostname
	if hostname == "" {
		hostname = c.spec.ID
	}
	return nil, postInit(ctx, c.p.socket(), guestInit{Hostname: hostname})
}
