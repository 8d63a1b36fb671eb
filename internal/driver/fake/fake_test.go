package fake

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/drivertest"
	"github.com/denhq/den/internal/errdefs"
)

func newTestDriver(t *testing.T) (driver.Driver, driver.Spec) {
	d, err := New(Config{Dir: drivertest.TempDir(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return d, driver.Spec{Image: driver.Image{Ref: "host", Layers: []string{t.TempDir()}}, CPUs: 1, MemoryMB: 256, DiskMB: 64}
}

func TestConformance(t *testing.T) {
	drivertest.RunOptions(t, newTestDriver, drivertest.Options{
		Leftovers: func(t *testing.T, id string) []string {
			dir := filepath.Join(drivertest.TempDir(t), id)
			if _, err := os.Stat(dir); err == nil {
				return []string{dir}
			}
			return nil
		},
		KillInit: func(t *testing.T, d driver.Driver, id string) {
			if err := d.(*Driver).Kill(id); err != nil {
				t.Fatalf("Kill: %v", err)
			}
		},
	})
}

func TestFailCreate(t *testing.T) {
	boom := errdefs.New(errdefs.ResourceExhausted, "no capacity")
	d, err := New(Config{Dir: t.TempDir(), FailCreate: func(context.Context, driver.Spec) error { return boom }})
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Create(context.Background(), driver.Spec{ID: "a"})
	if !errors.Is(err, boom) {
		t.Fatalf("Create = %v, want the injected error", err)
	}
	if _, err := d.Status(context.Background(), "a"); !errdefs.IsNotFound(err) {
		t.Fatalf("Status after failed Create = %v, want NotFound", err)
	}
}

func TestConfigValidate(t *testing.T) {
	_, err := New(Config{Dir: "relative"})
	if errdefs.KindOf(err) != errdefs.InvalidArgument || err.Error() != `fake driver config: Dir must be an absolute path, got "relative"` {
		t.Fatalf("New with a relative dir = %v", err)
	}
}
