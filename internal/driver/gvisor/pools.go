package gvisor

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/hostmem"
)

// Declared pools (driver.Pooler): the node declares pools of image or
// snapshot shapes with their sizes; the warm pool (pool.go) keeps their
// spares beside the implicit pool's, and Create or Clone of a declared
// shape claims one (claim.go).

// poolMemoryReserveMB is host memory a spare boot leaves free, beyond the
// spare's own memory limit.
const poolMemoryReserveMB = 512

// SetPools implements driver.Pooler. Pools whose spec the driver cannot
// run are declared anyway; their boots fail and back off, and PoolStatus
// says why.
func (d *Driver) SetPools(pools []driver.Pool) {
	decl := make([]declared, 0, len(pools))
	for _, p := range pools {
		decl = append(decl, declared{key: p.Key, sh: cloneShapeOf(p.Spec, p.From), size: max(p.Size, 0)})
	}
	d.pool.setDeclared(decl)
}

// PoolStatus implements driver.Pooler.
func (d *Driver) PoolStatus() []driver.PoolStatus { return d.pool.status() }

// bootShape is the pool's boot function: a booted spare of an image shape,
// or a clone of a snapshot shape's checkpoint.
func (d *Driver) bootShape(ctx context.Context, sh shape) (spare, error) {
	if sh.from == "" {
		return d.bootSpare(ctx, sh.spec)
	}
	return d.bootCloneSpare(ctx, sh.spec, sh.from)
}

// bootCloneSpare restores a spare from the checkpoint in dir, in this
// instance's spare directory, as Clone does for a sandbox.
func (d *Driver) bootCloneSpare(ctx context.Context, spec driver.Spec, dir string) (spare, error) {
	id := spareIDPrefix + randomHex(6)
	sp := spare{id: id, p: paths{dir: filepath.Join(d.spares.dir, id)}}
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

// hostMemoryShort says why the host cannot take a spare of spec now: its
// available memory would fall below the spare's limit plus a reserve.
// Empty when it can, or when /proc/meminfo cannot be read.
func hostMemoryShort(spec driver.Spec) string {
	mem, err := hostmem.Read()
	if err != nil {
		return ""
	}
	if need := spec.MemoryMB + poolMemoryReserveMB; mem.AvailableMB < need {
		return fmt.Sprintf("the host has %d MiB of memory available; a spare needs %d MiB (its limit and a %d MiB reserve)", mem.AvailableMB, need, poolMemoryReserveMB)
	}
	return ""
}
