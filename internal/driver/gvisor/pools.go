package gvisor

import (
	"context"
	"fmt"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/warmpool"
)

// Declared pools (driver.Pooler): the node declares pools of image or
// snapshot shapes with their sizes; the warm pool (pool.go) keeps their
// spares beside the implicit pool's, and Create or Clone of a declared
// shape claims one (claim.go).

// SetPools implements driver.Pooler. Pools whose spec the driver cannot
// run are declared anyway; their boots fail and back off, and PoolStatus
// says why.
func (d *Driver) SetPools(pools []driver.Pool) {
	d.pool.SetPools(pools)
}

// PoolStatus implements driver.Pooler.
func (d *Driver) PoolStatus() []driver.PoolStatus { return d.pool.Status() }

// bootShape is the pool's boot function: a booted spare of an image shape,
// or a clone of a snapshot shape's checkpoint.
func (d *Driver) bootShape(ctx context.Context, sh warmpool.Shape) (spare, error) {
	if sh.From == "" {
		return d.bootSpare(ctx, sh.Spec)
	}
	return d.bootCloneSpare(ctx, sh.Spec, sh.From)
}

// bootCloneSpare restores a spare from the checkpoint in dir, in this
// instance's spare directory, as Clone does for a sandbox.
func (d *Driver) bootCloneSpare(ctx context.Context, spec driver.Spec, dir string) (spare, error) {
	id, spareDir := d.spares.NewID()
	sp := spare{id: id, p: paths{dir: spareDir}}
	spec.ID = id
	m, err := readManifest(dir)
	if err != nil {
		return spare{}, fmt.Errorf("clone spare: %w", err)
	}
	if err := m.fits(spec); err != nil {
		return spare{}, fmt.Errorf("clone spare: %w", err)
	}
	guestBin, err := d.guestBinaryFor(m.GuestBinary)
	if err != nil {
		return spare{}, fmt.Errorf("clone spare: %w", err)
	}
	c := &creation{d: d, spec: spec, p: sp.p, image: dir, platform: m.Platform, rid: runtimeIDFor(id), guestBin: guestBin, process: m.Process}
	if err := d.runSteps(ctx, c, cloneSteps); err != nil {
		return spare{}, err
	}
	if conn, err := dialUnix(ctx, sp.p.socket()); err == nil {
		sp.conn = conn // for the claim (conns.go)
	}
	return sp, nil
}
