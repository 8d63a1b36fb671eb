package gvisor

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/warmpool"
	"github.com/denhq/den/internal/errdefs"
)

// Warm spares live in a warmpool.Set per driver instance under
// StateDir/spares; the next New destroys those of instances that died.

// spare is a started sandbox that nobody has claimed yet. Its runsc
// container ID (and cgroup name) is id; it lives in directory p.
type spare struct {
	id string
	p  paths
	// conn, when not nil, is a connection to the spare's guest agent,
	// dialled while it waits (conns.go).
	conn net.Conn
}

// newSpareTimeout bounds the clean-up of earlier instances' spares in New.
const newSpareTimeout = 2 * time.Minute

func (d *Driver) sparesDir() string { return filepath.Join(d.cfg.StateDir, "spares") }

// bootSpare starts a spare of spec (a shape's spec) in this instance's
// spare directory. It is the pool's boot function.
func (d *Driver) bootSpare(ctx context.Context, spec driver.Spec) (spare, error) {
	id, dir := d.spares.NewID()
	sp := spare{id: id, p: paths{dir: dir}}
	spec.ID = id
	if err := d.runSteps(ctx, &creation{d: d, spec: spec, p: sp.p}, createSteps); err != nil {
		return spare{}, err
	}
	if err := d.warmSpare(ctx, sp); err != nil {
		if ctx.Err() != nil { // the pool is closing: undo the boot
			_ = d.destroySpare(context.WithoutCancel(ctx), sp)
			return spare{}, ctx.Err()
		}
		d.log.Warn("warm-up of a spare failed; it stays in the pool, colder", "spare", sp.id, "err", err)
	}
	if conn, err := dialUnix(ctx, sp.p.socket()); err == nil {
		sp.conn = conn // for the claim (conns.go)
	}
	return sp, nil
}

// destroySpare is the pool's destroy function.
func (d *Driver) destroySpare(ctx context.Context, sp spare) error {
	if sp.conn != nil {
		sp.conn.Close()
	}
	if err := d.destroyRuntime(ctx, sp.runtimeID(), sp.p); err != nil {
		return fmt.Errorf("destroy spare %s: %w", sp.id, err)
	}
	if err := d.teardownNetwork(sp.id); err != nil {
		return fmt.Errorf("destroy spare %s: %w", sp.id, err)
	}
	return nil
}

// cleanupSpares destroys the spares of driver instances that are gone.
func (d *Driver) cleanupSpares(ctx context.Context) {
	warmpool.CleanupSets(ctx, d.sparesDir(), func(ctx context.Context, id, dir string) error {
		return d.destroySpare(ctx, spare{id: id, p: paths{dir: dir}})
	}, d.log)
}

// destroyRuntime deletes runsc container rid (which kills it and removes
// its cgroup), unmounts the rootfs under p and removes p's directory.
func (d *Driver) destroyRuntime(ctx context.Context, rid string, p paths) error {
	if err := d.runsc.deleteForce(ctx, rid); err != nil {
		return errdefs.Wrap(errdefs.Unavailable, err, "delete runsc container %s", rid)
	}
	if err := unmountRootfs(p); err != nil {
		return err
	}
	return removeDir(p)
}

// runtimeID is the spare's runsc container ID: from its state when it has
// one (spares of state version 2 used their bare ID), else runtimeIDFor.
func (sp spare) runtimeID() string {
	if st, err := readState(sp.p); err == nil {
		return st.runtimeID(sp.id)
	}
	return runtimeIDFor(sp.id)
}
