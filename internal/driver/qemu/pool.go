package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/warmpool"
	"github.com/denhq/den/internal/errdefs"
)

// The warm pool (driver.Pooler): booted VMs that nobody has claimed yet,
// of the shapes of declared pools and of the most recently created ones
// (Config.WarmPool). A spare boots like a sandbox, in a directory of this
// instance's warmpool.Set under StateDir/spares; a Create (or a Clone) of
// its shape claims it: the agent gets the sandbox's env, hostname and
// user, and the spare's directory is renamed to the sandbox's. QEMU runs
// on in the renamed directory: its files are open, its sockets are bound
// to inodes, and it is found by its working directory (alive).

// sparesDirName is the spare sets' directory in StateDir.
const sparesDirName = "spares"

// newSpareTimeout bounds the clean-up of earlier instances' spares in New.
const newSpareTimeout = 2 * time.Minute

// spare is a booted VM that nobody has claimed: its ID and directory.
type spare struct {
	id, dir string
	clone   bool // restored from a checkpoint, not booted
}

func (d *Driver) sparesDir() string { return filepath.Join(d.cfg.StateDir, sparesDirName) }

// startPool destroys the spares of dead instances and starts the pool
// (with WarmPool 0 and no declared pool it never holds a spare).
func (d *Driver) startPool() error {
	ctx, cancel := context.WithTimeout(context.Background(), newSpareTimeout)
	defer cancel()
	warmpool.CleanupSets(ctx, d.sparesDir(), func(ctx context.Context, id, dir string) error {
		return d.destroySpare(ctx, spare{id: id, dir: dir})
	}, d.log)
	var err error
	if d.spares, err = warmpool.OpenSet(d.sparesDir()); err != nil {
		return err
	}
	d.pool = warmpool.New(warmpool.Config[spare]{
		Size: d.cfg.WarmPool, Boot: d.bootShape, Destroy: d.destroySpare,
		Memory: func(spec driver.Spec) string {
			spec.MemoryMB += vmOverheadMB
			return warmpool.HostMemoryShort(spec)
		},
		Name: func(sp spare) string { return sp.id }, Log: d.log,
	})
	return nil
}

// SetPools implements driver.Pooler. Pools whose spec the driver cannot
// run are declared anyway; their boots fail and back off, and PoolStatus
// says why.
func (d *Driver) SetPools(pools []driver.Pool) { d.pool.SetPools(pools) }

// PoolStatus implements driver.Pooler.
func (d *Driver) PoolStatus() []driver.PoolStatus { return d.pool.Status() }

// bootShape is the pool's boot function: a booted VM of an image shape,
// or a clone of a snapshot shape's checkpoint.
func (d *Driver) bootShape(ctx context.Context, sh warmpool.Shape) (spare, error) {
	id, dir := d.spares.NewID()
	spec := sh.Spec
	spec.ID = id
	if sh.From == "" {
		c := &creation{d: d, spec: spec, dir: dir}
		if err := runSteps(ctx, d.log, "boot spare", id, c, createSteps); err != nil {
			d.dropChannel(id)
			return spare{}, err
		}
		return spare{id: id, dir: dir}, nil
	}
	m, err := readManifest(sh.From)
	if err == nil {
		err = m.fits(d, spec)
	}
	if err != nil {
		return spare{}, fmt.Errorf("boot spare: %w", err)
	}
	r := &restoring{d: d, spec: spec, sdir: dir, ckpt: sh.From, m: m}
	if err := runSteps(ctx, d.log, "boot spare", id, r, cloneSteps); err != nil {
		d.dropChannel(id)
		return spare{}, err
	}
	return spare{id: id, dir: dir, clone: true}, nil
}

// destroySpare is the pool's destroy function.
func (d *Driver) destroySpare(ctx context.Context, sp spare) error {
	d.dropChannel(sp.id)
	if err := destroyVMDir(ctx, sp.dir); err != nil {
		return fmt.Errorf("destroy spare %s: %w", sp.id, err)
	}
	if err := d.teardownNetwork(sp.id); err != nil {
		return fmt.Errorf("destroy spare %s: %w", sp.id, err)
	}
	return nil
}

// claiming is one claim of a spare in progress.
type claiming struct {
	d    *Driver
	spec driver.Spec
	sp   spare
	dir  string // the sandbox's directory
	raw  []byte // the encoded state
}

// claimSteps turn a spare into sandbox spec.ID. The rename comes last, so
// a crash before it leaves only a spare, which the next New destroys.
var claimSteps = []step[*claiming]{
	{"apply env, hostname and user", (*claiming).initGuest},
	{"hand over the network", (*claiming).claimNetwork},
	{"write state", (*claiming).writeState},
	{"move into place", (*claiming).moveIntoPlace},
}

// claim creates spec from a ready spare of shape sh. It returns nothing
// (and no error) when the pool has no such spare, or when the claim failed
// for another reason than ctx: the spare is destroyed and the caller
// creates cold.
func (d *Driver) claim(ctx context.Context, spec driver.Spec, sh warmpool.Shape) (*driver.Handle, error) {
	sp, ok := d.pool.Take(sh.Key)
	if !ok {
		return nil, nil
	}
	begin := time.Now()
	c := &claiming{d: d, spec: spec, sp: sp, dir: d.sandboxDir(spec.ID)}
	if err := runSteps(ctx, d.log, "claim a spare for sandbox", spec.ID, c, claimSteps); err != nil {
		if errdefs.Is(err, errdefs.Canceled) {
			return nil, err
		}
		d.log.Warn("claim of a spare VM failed; creating cold", "sandbox", spec.ID, "spare", sp.id, "err", err)
		return nil, nil
	}
	d.log.Info("sandbox created", "sandbox", spec.ID, "spare", sp.id, "took", time.Since(begin))
	return &driver.Handle{ID: spec.ID, Driver: Name, Version: stateVersion, State: c.raw}, nil
}

// initGuest gives the agent what a cold boot or clone gives it: a booted
// spare the spec's env, hostname and default user, a cloned one its
// hostname. Its undo destroys the spare, wherever it is by then.
func (c *claiming) initGuest(ctx context.Context) (func(context.Context) error, error) {
	undo := func(ctx context.Context) error { return c.d.destroySpare(ctx, c.sp) } // the rename, last, cannot fail after it
	hostname := c.spec.Hostname
	if hostname == "" {
		hostname = c.spec.ID
	}
	body := map[string]any{"hostname": hostname}
	if !c.sp.clone {
		body["env"] = c.spec.Env
		if c.spec.User != "" {
			body["defaultUser"] = c.spec.User
		}
	}
	raw, _ := json.Marshal(body) // strings only: cannot fail
	return undo, guestRequest(ctx, c.d.channelAt(c.sp.id, c.sp.dir), http.MethodPost, "/init", raw, http.StatusNoContent)
}

// writeState rewrites the spare's state for its new directory, with the
// claim as its start.
func (c *claiming) writeState(ctx context.Context) (func(context.Context) error, error) {
	st, err := readState(c.sp.dir)
	if err != nil {
		return nil, err
	}
	if rel, ok := strings.CutPrefix(st.Memory, c.sp.dir+string(filepath.Separator)); ok {
		st.Memory = filepath.Join(c.dir, rel) // a booted spare's RAM, in its directory
	}
	st.Dir, st.StartedAt, st.Boot = c.dir, time.Now().UTC(), nil
	c.raw, err = writeState(c.sp.dir, st)
	return nil, err
}

// moveIntoPlace renames the spare's directory to the sandbox's and hands
// it the spare's agent channel.
func (c *claiming) moveIntoPlace(ctx context.Context) (func(context.Context) error, error) {
	err := unix.Renameat2(unix.AT_FDCWD, c.sp.dir, unix.AT_FDCWD, c.dir, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EEXIST) {
		return nil, errdefs.Wrap(errdefs.Conflict, err, "move spare %s into place", c.sp.id)
	}
	if err != nil {
		return nil, fmt.Errorf("move spare %s into place: %w", c.sp.id, err)
	}
	c.d.moveChannel(c.sp.id, c.spec.ID, c.dir)
	return nil, nil
}

// destroyVMDir kills the QEMU of a VM directory (from its state, else its
// pid file) and removes the directory.
func destroyVMDir(ctx context.Context, dir string) error {
	if st, err := readState(dir); err == nil {
		if err := killVM(ctx, st.PID, dir); err != nil {
			return err
		}
	} else if pid, err := readPidFile(filepath.Join(dir, "qemu.pid")); err == nil {
		if err := killVM(ctx, pid, dir); err != nil {
			return err
		}
	}
	return os.RemoveAll(dir)
}
