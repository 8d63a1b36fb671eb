package gvisor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
)

// Warm spares live outside sandboxes/, in a directory per driver instance:
//
//	spares/<instance>/lock        flock(2)ed by the instance while it lives
//	spares/<instance>/<spare-id>/ a sandbox directory, as under sandboxes/
//
// Nothing else records a spare, so an instance that dies leaves its spares
// behind; the next New destroys those of every instance whose lock it can
// take (the kernel drops a lock when its holder dies). A live instance's
// lock is held, so two drivers on one StateDir (as in tests) leave each
// other's spares alone.

const (
	// newSpareTimeout bounds the clean-up of earlier instances' spares in New.
	newSpareTimeout = 2 * time.Minute

	sparesDirName = "spares"
	spareLockName = "lock"
	spareIDPrefix = "spare-"
)

// spareSet is this instance's spare directory and the lock that marks it live.
type spareSet struct {
	dir  string
	lock *os.File // nil once released
}

func (d *Driver) sparesDir() string { return filepath.Join(d.cfg.StateDir, sparesDirName) }

// openSpareSet creates this instance's spare directory and locks it.
func (d *Driver) openSpareSet() (*spareSet, error) {
	dir := filepath.Join(d.sparesDir(), randomHex(4))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("gvisor driver: create spare dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, spareLockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("gvisor driver: create spare lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("gvisor driver: lock spare dir: %w", err)
	}
	return &spareSet{dir: dir, lock: f}, nil
}

// release removes the (by now empty) spare directory and drops the lock.
// A directory that is not empty stays, for the next New to clean up.
func (s *spareSet) release() error {
	if s == nil || s.lock == nil {
		return nil
	}
	_ = os.Remove(filepath.Join(s.dir, spareLockName))
	err := os.Remove(s.dir)
	s.lock.Close()
	s.lock = nil
	if err != nil {
		return fmt.Errorf("remove spare dir: %w", err)
	}
	return nil
}

// bootSpare starts a spare of spec (a shape's spec) in this instance's
// spare directory. It is the pool's boot function.
func (d *Driver) bootSpare(ctx context.Context, spec driver.Spec) (spare, error) {
	id := spareIDPrefix + randomHex(6)
	sp := spare{id: id, p: paths{dir: filepath.Join(d.spares.dir, id)}}
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
	return nil
}

// cleanupSpares destroys the spares of driver instances that are gone.
// Errors are logged: a spare that cannot be removed now is retried by the
// next New.
func (d *Driver) cleanupSpares(ctx context.Context) {
	sets, err := os.ReadDir(d.sparesDir())
	if err != nil {
		d.log.Warn("list warm spares of earlier instances", "err", err)
		return
	}
	for _, set := range sets {
		dir := filepath.Join(d.sparesDir(), set.Name())
		if err := d.cleanupSpareSet(ctx, dir); err != nil {
			d.log.Warn("clean up warm spares of an earlier instance", "dir", dir, "err", err)
		}
	}
}

// cleanupSpareSet destroys the spares in dir and removes it, unless the
// instance that owns it still holds its lock (or is still creating it).
func (d *Driver) cleanupSpareSet(ctx context.Context, dir string) error {
	f, err := os.Open(filepath.Join(dir, spareLockName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
		return nil
	} else if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		sp := spare{id: e.Name(), p: paths{dir: filepath.Join(dir, e.Name())}}
		if err := d.destroySpare(ctx, sp); err != nil {
			return err
		}
		d.log.Info("destroyed warm spare left by an earlier instance", "spare", sp.id)
	}
	return os.RemoveAll(dir) // only the lock file is left
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

// randomHex is n random bytes, hex-encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// runtimeID is the spare's runsc container ID: from its state when it has
// one (spares of state version 2 used their bare ID), else runtimeIDFor.
func (sp spare) runtimeID() string {
	if st, err := readState(sp.p); err == nil {
		return st.runtimeID(sp.id)
	}
	return runtimeIDFor(sp.id)
}
