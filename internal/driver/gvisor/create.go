package gvisor

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/warmpool"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/sandboxnet"
)

// creation is one Create, spare boot or claim in progress: the spec, its
// paths and what the steps produced so far.
type creation struct {
	d    *Driver
	spec driver.Spec
	p    paths
	from spare           // claim only: the warm spare becoming this sandbox
	raw  []byte          // encoded state, the Handle's State
	net  *sandboxnet.Net // the sandbox's network, when it has one

	// Claim only (claim.go, conns.go): the guest connection /init went
	// over, what it applies, and whether its answer is still unread.
	conn        net.Conn
	init        guestInit
	initPending bool
	// recordNet writes the record of the network the claim took over; the
	// claim runs it after it returns, with den.json (claimSteps).
	recordNet func() error

	// Resume and Clone only (restore.go):
	image    string         // the checkpoint directory to restore from
	platform string         // the checkpoint's runsc platform
	rid      string         // the runsc container ID to restore as
	prev     sandboxState   // Resume: the suspended sandbox's state
	guestBin string         // the guest binary to bind; empty: the driver's
	process  *specs.Process // Clone: the checkpoint's OCI process, when recorded
}

// step is one named stage of Create. It returns an undo function (nil when
// there is nothing to undo) that Create runs, in reverse order, on failure.
type step struct {
	name string
	do   func(c *creation, ctx context.Context) (undo func(ctx context.Context) error, err error)
}

// createSteps build and start a sandbox: a cold Create, or a warm spare.
var createSteps = []step{
	{"make sandbox dir", (*creation).makeDir},
	{"set up network", (*creation).setupNetwork},
	{"prepare writable layer", (*creation).prepareUpper},
	{"mount rootfs", (*creation).mountRootfs},
	{"write OCI bundle", (*creation).writeBundle},
	{"start sandbox", (*creation).start},
	{"write state", (*creation).writeState},
	{"wait for guest agent", (*creation).waitGuest},
	{"apply CPU limit", (*creation).applyCPULimit},
}

// Create implements driver.Driver. It claims a warm spare of spec's shape
// when the pool has one (see pool.go), else it builds the sandbox cold;
// either way the shape becomes the pool's most recently used one.
func (d *Driver) Create(ctx context.Context, spec driver.Spec) (*driver.Handle, error) {
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	p := d.paths(spec.ID)
	if h, err := d.existing(ctx, spec.ID, p); h != nil || err != nil {
		return h, err
	}
	if err := ctx.Err(); err != nil {
		return nil, wrapCreate(spec.ID, "begin", err)
	}
	if spec.UpperDir != "" {
		return d.createCold(ctx, spec, p) // never from or for the pool
	}
	sh := warmpool.ShapeOf(spec)
	h, err := d.claim(ctx, spec, p, sh)
	if h == nil && err == nil {
		h, err = d.createCold(ctx, spec, p)
	}
	if err != nil {
		return nil, err
	}
	d.pool.Use(sh)
	return h, nil
}

// Claim implements driver.Claimer: Create from a spare only.
func (d *Driver) Claim(ctx context.Context, spec driver.Spec) (*driver.Handle, error) {
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	if spec.UpperDir != "" {
		return nil, nil // never from the pool
	}
	p := d.paths(spec.ID)
	if h, err := d.existing(ctx, spec.ID, p); h != nil || err != nil {
		return h, err
	}
	sh := warmpool.ShapeOf(spec)
	h, err := d.claim(ctx, spec, p, sh)
	if h != nil {
		d.pool.Use(sh)
	}
	return h, err
}

// createCold builds and starts the sandbox with runsc.
func (d *Driver) createCold(ctx context.Context, spec driver.Spec, p paths) (*driver.Handle, error) {
	select {
	case d.coldStarts <- struct{}{}:
		defer func() { <-d.coldStarts }()
	case <-ctx.Done():
		return nil, wrapCreate(spec.ID, "wait for a start slot", ctx.Err())
	}
	begin := time.Now()
	c := &creation{d: d, spec: spec, p: p}
	if err := d.runSteps(ctx, c, createSteps); err != nil {
		return nil, err
	}
	d.log.Info("sandbox created", "sandbox", spec.ID, "platform", d.platform, "took", time.Since(begin))
	return c.handle(), nil
}

// runSteps runs steps in order, checking ctx after each; on failure it
// runs the undo functions of the steps done so far, in reverse order.
func (d *Driver) runSteps(ctx context.Context, c *creation, steps []step) error {
	var undo []func(context.Context) error
	for _, s := range steps {
		stepBegin := time.Now()
		u, err := s.do(c, ctx)
		d.log.Debug("create step", "sandbox", c.spec.ID, "step", s.name, "took", time.Since(stepBegin))
		if u != nil {
			undo = append(undo, u)
		}
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			d.rollback(ctx, c.spec.ID, undo)
			return wrapCreate(c.spec.ID, s.name, err)
		}
	}
	return nil
}

// wrapCreate adds the failed step to err, keeping its kind (Canceled for a
// cancelled ctx, Unavailable when the sandbox failed to come up).
func wrapCreate(id, stepName string, err error) error {
	kind := errdefs.KindOf(err)
	if kind == errdefs.Internal && ctxErr(err) {
		kind = errdefs.Canceled
	}
	return errdefs.Wrap(kind, err, "create sandbox %s: %s", id, stepName)
}

// rollback runs undo functions in reverse order, on a context that is not
// cancelled with the Create context.
func (d *Driver) rollback(ctx context.Context, id string, undo []func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	for i := len(undo) - 1; i >= 0; i-- {
		if err := undo[i](ctx); err != nil {
			d.log.Warn("undo of failed create", "sandbox", id, "err", err)
		}
	}
}

// existing returns the handle of an already running sandbox id, nothing
// when there is no such sandbox, and FailedPrecondition for leftovers of a
// sandbox that is not running (the caller must Destroy it first).
func (d *Driver) existing(ctx context.Context, id string, p paths) (*driver.Handle, error) {
	if _, err := os.Stat(p.dir); os.IsNotExist(err) {
		return nil, nil
	}
	s, err := d.Status(ctx, id)
	if err != nil && !errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("create sandbox %s: %w", id, err)
	}
	if err != nil || !s.Running {
		return nil, errdefs.New(errdefs.FailedPrecondition, "create sandbox %s: a sandbox with this id exists and is not running; destroy it first", id)
	}
	raw, err := os.ReadFile(p.stateFile())
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", id, err)
	}
	return &driver.Handle{ID: id, Driver: "gvisor", Version: stateVersion, State: raw}, nil
}

// checkSpec validates what Create needs from spec.
func checkSpec(spec driver.Spec) error {
	if err := checkID(spec.ID); err != nil {
		return err
	}
	if len(spec.Image.Layers) == 0 {
		return errdefs.New(errdefs.InvalidArgument, "create sandbox %s: image %q has no layers", spec.ID, spec.Image.Ref)
	}
	if spec.MemoryMB < 0 || spec.DiskMB < 0 || spec.CPUs < 0 {
		return errdefs.New(errdefs.InvalidArgument, "create sandbox %s: negative resource limit", spec.ID)
	}
	return checkUpperDirPath(spec)
}

func (c *creation) makeDir(ctx context.Context) (func(context.Context) error, error) {
	if err := os.Mkdir(c.p.dir, 0o700); err != nil {
		return nil, fmt.Errorf("make sandbox dir: %w", err)
	}
	undo := func(context.Context) error { return removeDir(c.p) }
	for _, dir := range []string{c.p.run(), c.p.filestore()} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			return undo, fmt.Errorf("make sandbox dir: %w", err)
		}
	}
	return undo, nil
}

// prepareUpper prepares the overlay's upper side: upper/ in the sandbox
// directory, or the caller's UpperDir with an init layer.
func (c *creation) prepareUpper(ctx context.Context) (func(context.Context) error, error) {
	if c.spec.UpperDir != "" {
		return nil, prepareCallerUpper(c.spec, c.p)
	}
	return nil, prepareUpper(c.p)
}

func (c *creation) mountRootfs(ctx context.Context) (func(context.Context) error, error) {
	if err := c.overlay().mount(c.p); err != nil {
		return nil, err
	}
	return func(context.Context) error { return unmountRootfs(c.p) }, nil
}

// overlay is the sandbox's host overlay.
func (c *creation) overlay() overlay {
	if c.spec.UpperDir == "" {
		return overlay{lower: c.spec.Image.Layers, upper: c.p.upper(), work: c.p.work()}
	}
	lower := append([]string{c.p.initLayer()}, c.spec.Image.Layers...)
	return overlay{lower: lower, upper: c.spec.UpperDir, work: c.p.work(), plainUpper: true}
}

func (c *creation) writeBundle(ctx context.Context) (func(context.Context) error, error) {
	return nil, writeSpec(ociSpec(c.d.cfg, c.spec, c.p, c.guestBinary(), c.net), c.p)
}

// start runs `runsc run --detach`: one runsc invocation instead of create
// and start, measured faster than the pair.
func (c *creation) start(ctx context.Context) (func(context.Context) error, error) {
	args := c.d.runFlags(c.p, c.spec, c.net)
	rid := runtimeIDFor(c.spec.ID)
	args = append(args, "run", "--detach", "--bundle", c.p.dir, "--pid-file", c.p.pidFile(), rid)
	undo := func(ctx context.Context) error { return c.d.runsc.deleteForce(ctx, rid) }
	if err := c.d.runsc.detached(ctx, c.p.log(), args...); err != nil {
		if ctxErr(err) {
			return undo, err
		}
		return undo, errdefs.Wrap(errdefs.Unavailable, err, "start runsc")
	}
	return undo, nil
}

// runFlags are the global runsc flags that configure a new sandbox. With
// an UpperDir, root filesystem writes go to the host overlay (no gVisor
// rootfs overlay, no quota); else to gVisor's overlay with its filestore.
func (d *Driver) runFlags(p paths, spec driver.Spec, nt *sandboxnet.Net) []string {
	return d.runFlagsOn(d.platform, p, spec, nt)
}

// runFlagsOn is runFlags for a sandbox on platform (a restored sandbox
// keeps the platform of its checkpoint). A sandbox with a network (nt)
// runs runsc's network stack on the namespace's eth0; others have
// loopback only.
func (d *Driver) runFlagsOn(platform string, p paths, spec driver.Spec, nt *sandboxnet.Net) []string {
	overlay := "--overlay2=none"
	if spec.UpperDir == "" {
		overlay = "--overlay2=root:dir=" + p.filestore()
		if spec.DiskMB > 0 {
			overlay += ",size=" + strconv.FormatInt(spec.DiskMB, 10) + "m"
		}
	}
	// --allow-suid: setuid binaries (sudo) work inside; the sandbox kernel
	// boundary is unchanged, elevation stays inside the sentry.
	network := "--network=none"
	if nt != nil {
		network = "--network=sandbox"
	}
	args := []string{"--platform=" + platform, network, "--host-uds=create", "--allow-suid", overlay, "--host-settings=" + d.cfg.HostSettings}
	if d.cfg.Debug {
		args = append(args, "--debug", "--debug-log="+p.dir+"/")
	}
	return args
}

func (c *creation) writeState(ctx context.Context) (func(context.Context) error, error) {
	platform := c.d.platform
	if c.platform != "" {
		platform = c.platform
	}
	st := sandboxState{
		Dir: c.p.dir, RunscRoot: c.d.runsc.root, Platform: platform, RuntimeID: runtimeIDFor(c.spec.ID),
		Cgroup: cgroupPath(c.d.cfg, c.spec.ID), CPUQuotaUS: cpuQuotaUS(c.spec), StartedAt: time.Now().UTC(),
		MemoryLimit: uint64(c.spec.MemoryMB) << 20, DiskLimitBytes: uint64(c.spec.DiskMB) << 20,
		UpperDir: c.spec.UpperDir, Layers: c.spec.Image.Layers, GuestBinary: c.guestBinary(),
		CheckpointHook: c.image != "",
	}
	if st.UpperDir != "" {
		st.DiskLimitBytes = 0 // not enforced
	}
	raw, err := writeState(c.p, st)
	c.raw = raw
	return nil, err
}

func (c *creation) waitGuest(ctx context.Context) (func(context.Context) error, error) {
	return nil, waitHealthy(ctx, time.Now().Add(c.d.cfg.StartTimeout), c.p)
}

// guestBinary is the guest binary the sandbox binds.
func (c *creation) guestBinary() string {
	if c.guestBin != "" {
		return c.guestBin
	}
	return c.d.guestBin
}

func (c *creation) handle() *driver.Handle {
	return &driver.Handle{ID: c.spec.ID, Driver: "gvisor", Version: stateVersion, State: c.raw}
}
