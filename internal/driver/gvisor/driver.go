package gvisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/warmpool"
	"github.com/denhq/den/internal/errdefs"
)

// Driver runs sandboxes with runsc. It holds no per-sandbox memory: every
// method derives paths from the ID and asks runsc or the filesystem, so all
// methods are safe for concurrent use and survive agent restarts. The only
// memory is the warm pool of unclaimed spares (warmpool), which Close
// destroys and a later New cleans up after a crash.
type Driver struct {
	cfg      Config
	platform string
	guestBin string // the installed copy of Config.GuestBinary (guestbin.go)
	runsc    runsc
	log      *slog.Logger
	pool     *warmpool.Pool[spare]
	spares   *warmpool.Set
	claims   atomic.Int64 // sandboxes created from a warm spare
	conns    guestConns   // pre-dialled guest connections of claimed sandboxes
	// coldStarts holds a token per cold start in progress (Config.MaxColdStarts).
	coldStarts chan struct{}
}

var (
	_ driver.Driver      = (*Driver)(nil)
	_ driver.StatsReader = (*Driver)(nil)
	_ driver.Waiter      = (*Driver)(nil)
	_ driver.Lister      = (*Driver)(nil)
	_ driver.Suspender   = (*Driver)(nil)
	_ driver.Pooler      = (*Driver)(nil)
)

// New checks cfg, applies its HostSettings policy, prepares StateDir,
// destroys warm spares that earlier driver instances left behind and, when
// cfg.Platform is empty, probes whether runsc's systrap platform works here
// (a ~0.2 s throwaway sandbox), falling back to ptrace. It starts the warm
// pool's goroutine, which Close stops.
func New(cfg Config) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	d := &Driver{
		cfg:        cfg,
		runsc:      runsc{path: cfg.RunscPath, root: filepath.Join(cfg.StateDir, "runsc")},
		log:        cfg.Logger.With("driver", "gvisor"),
		coldStarts: make(chan struct{}, cfg.MaxColdStarts),
	}
	for _, dir := range []string{d.runsc.root, d.sandboxesDir(), d.sparesDir()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("gvisor driver: create state dir: %w", err)
		}
	}
	if err := applyHostSettings("/", cfg.HostSettings, writeSetting, d.log); err != nil {
		return nil, err
	}
	var err error
	if d.guestBin, err = installGuestBinary(cfg.StateDir, cfg.GuestBinary); err != nil {
		return nil, err
	}
	d.platform = cfg.Platform
	if d.platform == "" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		d.platform = probePlatform(ctx, d.runsc, cfg.StateDir, d.log)
	}
	if err := d.startPool(); err != nil {
		return nil, err
	}
	d.log.Info("gvisor driver ready", "platform", d.platform, "state_dir", cfg.StateDir, "warm_pool", cfg.WarmPool, "host_settings", cfg.HostSettings)
	return d, nil
}

// startPool cleans up the spares of dead instances and starts the pool
// (with WarmPool 0 and no declared pool it never holds a spare).
func (d *Driver) startPool() error {
	ctx, cancel := context.WithTimeout(context.Background(), newSpareTimeout)
	defer cancel()
	d.cleanupSpares(ctx)
	var err error
	if d.spares, err = warmpool.OpenSet(d.sparesDir()); err != nil {
		return err
	}
	d.pool = warmpool.New(warmpool.Config[spare]{
		Size: d.cfg.WarmPool, Boot: d.bootShape, Destroy: d.destroySpare, Memory: warmpool.HostMemoryShort,
		Name: func(sp spare) string { return sp.id }, Log: d.log,
	})
	return nil
}

// Platform is the runsc platform new sandboxes use.
func (d *Driver) Platform() string { return d.platform }

// Capabilities implements driver.Driver.
func (d *Driver) Capabilities() driver.Capabilities {
	return driver.Capabilities{Name: "gvisor", Isolation: "user-space-kernel", Stats: true, Wait: true, List: true, Suspend: true, Pool: true, UpperDir: true, Network: d.cfg.Networks != nil}
}

func (d *Driver) sandboxesDir() string { return filepath.Join(d.cfg.StateDir, "sandboxes") }

// paths returns the host paths of sandbox id; id must be valid.
func (d *Driver) paths(id string) paths {
	return paths{dir: filepath.Join(d.sandboxesDir(), id)}
}

// Recover implements driver.Driver: it checks the handle belongs to this
// driver's state dir and that the sandbox still runs with its agent
// answering, or is suspended. A checkpoint that an agent crash
// interrupted is abandoned: the guest agent listens again.
func (d *Driver) Recover(ctx context.Context, h *driver.Handle) error {
	if err := checkID(h.ID); err != nil {
		return err
	}
	if h.Driver != "gvisor" {
		return errdefs.New(errdefs.FailedPrecondition, "recover sandbox %s: handle is for driver %q, not gvisor", h.ID, h.Driver)
	}
	st, err := decodeState(h)
	if err != nil {
		return err
	}
	p := d.paths(h.ID)
	if st.Dir != p.dir || st.RunscRoot != d.runsc.root {
		return errdefs.New(errdefs.FailedPrecondition, "recover sandbox %s: handle is for state dir %s, driver uses %s", h.ID, st.Dir, p.dir)
	}
	if err := d.recoverClaimedNetwork(h.ID, st); err != nil {
		return fmt.Errorf("recover sandbox %s: %w", h.ID, err)
	}
	// A crash between a claim and its den.json write left the spare's
	// state there (see claimSteps); the handle holds the claim's.
	if onDisk, err := readState(p); err == nil && onDisk.Dir != p.dir {
		if _, err := writeState(p, st); err != nil {
			return fmt.Errorf("recover sandbox %s: %w", h.ID, err)
		}
		d.log.Info("wrote the state of a claim a crash interrupted", "sandbox", h.ID)
	}
	if err := d.recoverCheckpointing(ctx, h.ID, p); err != nil {
		return fmt.Errorf("recover sandbox %s: %w", h.ID, err)
	}
	s, err := d.Status(ctx, h.ID)
	if err != nil {
		return fmt.Errorf("recover sandbox %s: %w", h.ID, err)
	}
	if s.Reason == driver.ReasonSuspended {
		d.log.Info("sandbox recovered", "sandbox", h.ID, "suspended", true)
		return nil
	}
	if !s.Running {
		return errdefs.New(errdefs.NotFound, "recover sandbox %s: not running (%s)", h.ID, s.Reason)
	}
	if err := checkHealth(ctx, p.socket()); err != nil {
		return errdefs.Wrap(errdefs.Unavailable, err, "recover sandbox %s: guest agent", h.ID)
	}
	// A den that died between a start and its "apply CPU limit" step left
	// the sandbox unlimited.
	if err := setCPUQuota(st.Cgroup, st.CPUQuotaUS); err != nil {
		return fmt.Errorf("recover sandbox %s: %w", h.ID, err)
	}
	d.log.Info("sandbox recovered", "sandbox", h.ID)
	return nil
}

// Status implements driver.Driver.
func (d *Driver) Status(ctx context.Context, id string) (driver.Status, error) {
	if err := checkID(id); err != nil {
		return driver.Status{}, err
	}
	p := d.paths(id)
	st, err := readState(p)
	if err != nil {
		return driver.Status{}, fmt.Errorf("status of sandbox %s: %w", id, err)
	}
	if st.Phase == phaseSuspended {
		return driver.Status{Reason: driver.ReasonSuspended, StartedAt: st.StartedAt}, nil
	}
	oci, err := d.runsc.state(ctx, st.runtimeID(id))
	if errdefs.IsNotFound(err) {
		return driver.Status{Reason: "not started", StartedAt: st.StartedAt}, nil
	}
	if err != nil {
		return driver.Status{}, fmt.Errorf("status of sandbox %s: %w", id, err)
	}
	if oci.Status == "running" {
		return driver.Status{Running: true, StartedAt: st.StartedAt}, nil
	}
	reason := "exited"
	if oomKilled(st.Cgroup) {
		reason = "oom"
	}
	return driver.Status{Reason: reason, StartedAt: st.StartedAt}, nil
}

// DialGuest implements driver.Driver.
func (d *Driver) DialGuest(ctx context.Context, id string) (net.Conn, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	p := d.paths(id)
	if _, err := os.Stat(p.stateFile()); err != nil {
		return nil, errdefs.New(errdefs.NotFound, "dial guest of sandbox %s: no such sandbox", id)
	}
	if conn, err := d.conns.take(ctx, id); err != nil || conn != nil {
		return conn, err // the claim's, already open
	}
	conn, err := dialUnix(ctx, p.socket())
	if err != nil {
		return nil, errdefs.Wrap(errdefs.Unavailable, err, "dial guest of sandbox %s", id)
	}
	return conn, nil
}

// Destroy implements driver.Driver: delete the runsc container (which kills
// it and removes its cgroup), unmount the rootfs, remove the directory.
// The runsc container ID comes from the state (a claimed spare keeps its
// own); without state (a half-built cold sandbox) it is runtimeIDFor(id).
func (d *Driver) Destroy(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	d.conns.drop(id)
	p := d.paths(id)
	rid := runtimeIDFor(id)
	if st, err := readState(p); err == nil {
		rid = st.runtimeID(id)
	}
	// A resume or clone restores as runtimeIDFor(id) and records it only
	// when done: a crash in between leaves a container the state does not
	// name (a claimed sandbox's state names its spare's).
	if own := runtimeIDFor(id); own != rid {
		if err := d.runsc.deleteForce(ctx, own); err != nil {
			return fmt.Errorf("destroy sandbox %s: delete runsc container %s: %w", id, own, err)
		}
	}
	if err := d.destroyRuntime(ctx, rid, p); err != nil {
		return fmt.Errorf("destroy sandbox %s: %w", id, err)
	}
	if err := d.teardownNetwork(id); err != nil {
		return fmt.Errorf("destroy sandbox %s: %w", id, err)
	}
	d.log.Debug("sandbox destroyed", "sandbox", id)
	return nil
}

// List implements driver.Lister: the directories under sandboxes/.
func (d *Driver) List(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(d.sandboxesDir())
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && checkID(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// removeDir removes the sandbox directory, refusing while rootfs is still a
// mount point (RemoveAll would then walk into the image).
func removeDir(p paths) error {
	mounted, err := isMountPoint(p.rootfs())
	if err != nil {
		return err
	}
	if mounted {
		return errors.New("rootfs is still mounted")
	}
	if err := os.RemoveAll(p.dir); err != nil {
		return fmt.Errorf("remove sandbox dir: %w", err)
	}
	return nil
}

// Close implements driver.Driver. Sandboxes keep running; unclaimed warm
// spares are destroyed (nothing else records them). It removes the
// cgroup parent when no sandbox is left in it, and it unmounts the
// empty network namespace runsc pins for gofers under its root (running
// gofers have joined it already; runsc pins a new one when needed), so
// that StateDir can be removed once its sandboxes are destroyed. Concurrent
// first starts may have stacked several mounts there: all are removed.
func (d *Driver) Close() error {
	d.pool.Close()
	d.conns.closeAll()
	if err := d.spares.Release(); err != nil {
		d.log.Warn("release warm spare dir", "err", err)
	}
	d.runsc.unmountNullNetNS()
	removeEmptyCgroup(d.cfg.CgroupParent)
	return nil
}
