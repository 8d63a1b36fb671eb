package drivertest

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
)

// setup returns a fresh driver (closed at the end of t) and a template
// spec with a new ID.
func (s *suite) setup(t *testing.T) (driver.Driver, driver.Spec) {
	t.Helper()
	d, tmpl := s.newDriver(t)
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	spec := tmpl
	spec.ID = newID(t)
	spec.Image.Layers = append([]string(nil), tmpl.Image.Layers...)
	spec.Env = map[string]string{}
	for k, v := range tmpl.Env {
		spec.Env[k] = v
	}
	return d, spec
}

// create creates spec and destroys it at the end of t.
func (s *suite) create(t *testing.T, ctx context.Context, d driver.Driver, spec driver.Spec) *driver.Handle {
	t.Helper()
	h, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create(%s): %v", spec.ID, err)
	}
	t.Cleanup(func() {
		if err := d.Destroy(context.Background(), spec.ID); err != nil {
			t.Errorf("Destroy(%s) at cleanup: %v", spec.ID, err)
		}
	})
	if h.ID != spec.ID {
		t.Fatalf("Create returned handle for %q, want %q", h.ID, spec.ID)
	}
	return h
}

// assertNoLeftovers fails t when the driver's Leftovers hook finds state.
func (s *suite) assertNoLeftovers(t *testing.T, id string) {
	t.Helper()
	if s.opts.Leftovers == nil {
		return
	}
	if left := s.opts.Leftovers(t, id); len(left) > 0 {
		t.Errorf("host state left behind for %s: %q", id, left)
	}
}

// mustShell runs script and fails t unless it exits 0.
func mustShell(t *testing.T, ctx context.Context, d driver.Driver, id, script string) Result {
	t.Helper()
	res, err := Shell(ctx, d, id, script)
	if err != nil {
		t.Fatalf("shell %q: %v", script, err)
	}
	if res.ExitCode != 0 || !res.Exited {
		t.Fatalf("shell %q: exit %d (%s), stderr %q", script, res.ExitCode, res.Status, res.Stderr)
	}
	return res
}

// assertKind fails t unless err is of kind want.
func assertKind(t *testing.T, what string, err error, want errdefs.Kind) {
	t.Helper()
	if got := errdefs.KindOf(err); err == nil || got != want {
		t.Fatalf("%s: error %v (kind %v), want kind %v", what, err, got, want)
	}
}

// requireIsolation skips t for drivers without an isolation boundary.
func requireIsolation(t *testing.T, d driver.Driver, what string) {
	t.Helper()
	if d.Capabilities().Isolation == "none" {
		t.Skipf("driver %s has isolation \"none\": %s cannot be enforced", d.Capabilities().Name, what)
	}
}

// eventually polls cond (every 20 ms) until it holds or ctx ends.
func eventually(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: still false when the test deadline passed", what)
		case <-tick.C:
		}
	}
}

// treeSnapshot records names, modes, sizes and mtimes under dirs, to check
// image layers are never modified.
func treeSnapshot(t *testing.T, dirs []string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := os.Lstat(path)
			if err != nil {
				return err
			}
			snap[path] = info.Mode().String() + " " + info.ModTime().String() + " " + itoa(info.Size())
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("snapshot %s: %v", dir, err)
		}
	}
	return snap
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// assertSameTree fails t when the layers changed since before.
func assertSameTree(t *testing.T, dirs []string, before map[string]string) {
	t.Helper()
	if diff := cmp.Diff(before, treeSnapshot(t, dirs)); diff != "" {
		t.Errorf("image layers were modified (-before +after):\n%s", diff)
	}
}
