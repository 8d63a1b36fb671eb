// Package fake is an in-process den driver for tests: a sandbox is a
// directory plus an in-process guest agent (internal/guest) whose
// processes run directly on the host — there is no isolation
// (Capabilities().Isolation is "none"), so the limits in a Spec are
// recorded but not enforced. DialGuest connects to the agent over
// net.Pipe. Function fields in Config inject faults.
//
// A fake sandbox has no root filesystem of its own: its processes see the
// host's, and Image.Layers are not read. Spec.UpperDir is checked as the
// gVisor driver checks it (a clean absolute path of an existing, empty
// directory, else InvalidArgument), recorded in the state and left in
// place by Destroy, but nothing is captured in it: it holds what processes
// write there by its host path, nothing else. Image.WorkingDir is the
// processes' default cwd when the host has that directory.
//
// Suspend (driver.Suspender) writes a small JSON file into the caller's
// directory and stops the agent; the sandbox is then not running with
// Reason "suspended" until Resume or Destroy. The fake has no memory
// image: the agent's processes do NOT survive a suspend; Resume and Clone
// start a fresh agent. Clone is a Create of the new ID from the spec.
//
// Warm pools (driver.Pooler) are declared and reported but hold nothing:
// a declared pool is always full, and a create or claim of its shape is
// an ordinary Create (see pool.go).
//
// Running sandboxes belong to the package, keyed by their directory, not to
// a Driver: like real sandboxes they outlive the Driver that created them,
// and a new Driver over the same Config.Dir reattaches through Recover.
package fake

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
)

// Name is the driver name of fake sandboxes.
const Name = "fake"

// stateVersion is the Handle.Version the fake writes and accepts.
const stateVersion = 1

// Config configures a fake Driver.
type Config struct {
	// Dir holds one directory per sandbox. Required.
	Dir string
	// Name is the runtime name the driver reports; default Name. A node
	// with several runtimes is tested with fakes of different names.
	Name string
	// Logger receives driver and agent logs. Default: discard.
	Logger *slog.Logger

	// Fault injection: a non-nil hook runs first in its method; a non-nil
	// error it returns is returned as is, with nothing changed.
	FailCreate    func(ctx context.Context, spec driver.Spec) error
	FailRecover   func(ctx context.Context, h *driver.Handle) error
	FailDialGuest func(ctx context.Context, id string) error
	FailDestroy   func(ctx context.Context, id string) error
	FailSuspend   func(ctx context.Context, id, dir string) error
	FailResume    func(ctx context.Context, spec driver.Spec, dir string) error
	FailClone     func(ctx context.Context, spec driver.Spec, dir string) error
}

// Validate checks c.
func (c Config) Validate() error {
	if c.Dir == "" || !filepath.IsAbs(c.Dir) {
		return errdefs.New(errdefs.InvalidArgument, "fake driver config: Dir must be an absolute path, got %q", c.Dir)
	}
	return nil
}

// Driver is the fake driver. It is safe for concurrent use.
type Driver struct {
	cfg   Config
	log   *slog.Logger
	pools pools // pool.go
}

var (
	_ driver.Driver      = (*Driver)(nil)
	_ driver.StatsReader = (*Driver)(nil)
	_ driver.Waiter      = (*Driver)(nil)
	_ driver.Lister      = (*Driver)(nil)
	_ driver.Suspender   = (*Driver)(nil)
	_ driver.Pooler      = (*Driver)(nil)
	_ driver.Claimer     = (*Driver)(nil)
)

// New returns a fake driver over cfg.Dir.
func New(cfg Config) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Name == "" {
		cfg.Name = Name
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("fake driver: %w", err)
	}
	return &Driver{cfg: cfg, log: cfg.Logger.With("driver", cfg.Name)}, nil
}

// Capabilities implements driver.Driver.
func (d *Driver) Capabilities() driver.Capabilities {
	return driver.Capabilities{Name: d.cfg.Name, Isolation: "none", Stats: true, Wait: true, List: true, Suspend: true, Pool: true, UpperDir: true}
}

var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

func (d *Driver) dir(id string) (string, error) {
	if !validID.MatchString(id) {
		return "", errdefs.New(errdefs.InvalidArgument, "invalid sandbox id %q", id)
	}
	return filepath.Join(d.cfg.Dir, id), nil
}

// state is the Handle state and the content of state.json.
type state struct {
	Dir       string      `json:"dir"`
	Spec      driver.Spec `json:"spec"`
	StartedAt time.Time   `json:"started_at"`
}

// Recover implements driver.Driver.
func (d *Driver) Recover(ctx context.Context, h *driver.Handle) error {
	if d.cfg.FailRecover != nil {
		if err := d.cfg.FailRecover(ctx, h); err != nil {
			return err
		}
	}
	dir, err := d.dir(h.ID)
	if err != nil {
		return err
	}
	if h.Version != stateVersion {
		return errdefs.New(errdefs.FailedPrecondition, "recover sandbox %s: fake handle version %d is not supported", h.ID, h.Version)
	}
	var st state
	if err := json.Unmarshal(h.State, &st); err != nil || st.Dir != dir {
		return errdefs.New(errdefs.FailedPrecondition, "recover sandbox %s: handle is not from this driver's directory", h.ID)
	}
	if lookup(dir) == nil && !suspended(dir) {
		return errdefs.New(errdefs.NotFound, "recover sandbox %s: not running", h.ID)
	}
	return nil
}

// Status implements driver.Driver.
func (d *Driver) Status(ctx context.Context, id string) (driver.Status, error) {
	dir, err := d.dir(id)
	if err != nil {
		return driver.Status{}, err
	}
	st, err := readState(dir)
	if err != nil {
		return driver.Status{}, fmt.Errorf("status of sandbox %s: %w", id, err)
	}
	if sb := lookup(dir); sb != nil {
		return driver.Status{Running: true, StartedAt: st.StartedAt}, nil
	}
	if suspended(dir) {
		return driver.Status{Reason: driver.ReasonSuspended, StartedAt: st.StartedAt}, nil
	}
	return driver.Status{Reason: "exited", StartedAt: st.StartedAt}, nil
}

// DialGuest implements driver.Driver.
func (d *Driver) DialGuest(ctx context.Context, id string) (net.Conn, error) {
	if d.cfg.FailDialGuest != nil {
		if err := d.cfg.FailDialGuest(ctx, id); err != nil {
			return nil, err
		}
	}
	dir, err := d.dir(id)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, errdefs.New(errdefs.NotFound, "dial guest of sandbox %s: no such sandbox", id)
	}
	sb := lookup(dir)
	if sb == nil {
		return nil, errdefs.New(errdefs.Unavailable, "dial guest of sandbox %s: not running", id)
	}
	return sb.dial(ctx)
}

// Destroy implements driver.Driver.
func (d *Driver) Destroy(ctx context.Context, id string) error {
	if d.cfg.FailDestroy != nil {
		if err := d.cfg.FailDestroy(ctx, id); err != nil {
			return err
		}
	}
	dir, err := d.dir(id)
	if err != nil {
		return err
	}
	if sb := unregister(dir); sb != nil {
		sb.stop()
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("destroy sandbox %s: %w", id, err)
	}
	return nil
}

// List implements driver.Lister: the sandbox directories under Config.Dir.
func (d *Driver) List(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(d.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && validID.MatchString(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Wait implements driver.Waiter.
func (d *Driver) Wait(ctx context.Context, id string) (driver.Status, error) {
	dir, err := d.dir(id)
	if err != nil {
		return driver.Status{}, err
	}
	if sb := lookup(dir); sb != nil {
		select {
		case <-sb.done:
		case <-ctx.Done():
			return driver.Status{}, errdefs.Wrap(errdefs.Canceled, ctx.Err(), "wait for sandbox %s", id)
		}
	}
	return d.Status(context.WithoutCancel(ctx), id)
}

// Kill stops sandbox id's guest agent and processes as a crash would: the
// sandbox stays (Status: not running, Reason "exited") until Destroy.
func (d *Driver) Kill(id string) error {
	dir, err := d.dir(id)
	if err != nil {
		return err
	}
	if sb := unregister(dir); sb != nil {
		sb.stop()
	}
	return nil
}

// Stats implements driver.StatsReader with synthetic numbers: 1 MiB of
// memory, CPU time equal to the sandbox's age, the spec's limits.
func (d *Driver) Stats(ctx context.Context, id string) (driver.Stats, error) {
	dir, err := d.dir(id)
	if err != nil {
		return driver.Stats{}, err
	}
	st, err := readState(dir)
	if err != nil {
		return driver.Stats{}, fmt.Errorf("stats of sandbox %s: %w", id, err)
	}
	now := time.Now()
	return driver.Stats{
		CPUUsageNanos:  uint64(max(now.Sub(st.StartedAt), 1)),
		MemoryBytes:    1 << 20,
		MemoryLimit:    uint64(st.Spec.MemoryMB) << 20,
		DiskLimitBytes: uint64(st.Spec.DiskMB) << 20,
		PIDs:           1,
		At:             now,
	}, nil
}

// Close implements driver.Driver. Sandboxes keep running.
func (d *Driver) Close() error { return nil }

func readState(dir string) (state, error) {
	var st state
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if os.IsNotExist(err) {
		return st, errdefs.New(errdefs.NotFound, "no sandbox at %s", dir)
	}
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(data, &st)
}
