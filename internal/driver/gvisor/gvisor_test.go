package gvisor

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/drivertest"
	"github.com/denhq/den/internal/driver/warmpool"
	"github.com/denhq/den/internal/testenv"
)

const testCgroupParent = "den-test"

var (
	platformOnce sync.Once
	platform     string
)

// newTestDriver returns a driver over drivertest.TempDir(t): a second call
// with the same t is the same driver after an agent restart.
func newTestDriver(t *testing.T) (driver.Driver, driver.Spec) {
	return newTestDriverPool(t, 0)
}

// newWarmTestDriver is newTestDriver with a warm pool of one spare per
// shape, warmed for the template spec: the first Create of a subtest with
// the template's shape claims a spare, later ones race the refill.
func newWarmTestDriver(t *testing.T) (driver.Driver, driver.Spec) {
	d, spec := newTestDriverPool(t, 1)
	g := d.(*Driver)
	warmUp(t, g, spec, 1)
	t.Cleanup(func() { t.Logf("sandboxes created from warm spares: %d", g.claims.Load()) })
	return d, spec
}

// warmUp makes spec's shape the pool's most recent and waits until it has
// n ready spares.
func warmUp(t testing.TB, d *Driver, spec driver.Spec, n int) {
	t.Helper()
	sh := warmpool.ShapeOf(spec)
	d.pool.Use(sh)
	deadline := time.Now().Add(time.Minute)
	for d.pool.ReadyCount(sh.Key) < n {
		if time.Now().After(deadline) {
			t.Fatalf("no warm spare of shape %s after a minute", sh.Key)
		}
		time.Sleep(5 * time.Millisecond) // polling, with the deadline above
	}
}

// newTestDriverPool is newTestDriver with Config.WarmPool = warm.
func newTestDriverPool(t *testing.T, warm int) (driver.Driver, driver.Spec) {
	return newTestDriverWith(t, func(c *Config) {
		c.WarmPool = warm
		if warm > 0 {
			c.WarmupScript = DefaultWarmupScript
		}
	})
}

// newTestDriverWith is newTestDriver with configure applied to the Config.
func newTestDriverWith(t *testing.T, configure func(*Config)) (driver.Driver, driver.Spec) {
	testenv.RequireRoot(t)
	stateDir := drivertest.TempDir(t)
	cfg := Config{
		RunscPath:    testenv.Runsc(t),
		GuestBinary:  testenv.GuestBinary(t),
		StateDir:     stateDir,
		CgroupParent: testCgroupParent,
		Networks:     drivertest.Networks(t),
		Logger:       slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	configure(&cfg)
	platformOnce.Do(func() {
		d, err := New(cfg)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		platform = d.Platform()
	})
	cfg.Platform = platform
	d, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// runsc bind-mounts a shared gofer network namespace under its root.
	rootfs := testenv.BusyboxRootfs(t)
	return d, driver.Spec{
		Image:    driver.Image{Ref: "busybox", Layers: []string{rootfs}, Env: []string{"IMAGE_ENV=1"}},
		CPUs:     1,
		MemoryMB: 512,
		DiskMB:   256,
	}
}

func TestConformance(t *testing.T) {
	drivertest.RunOptions(t, newTestDriver, drivertest.Options{
		Leftovers: leftovers,
		KillInit:  killInit,
	})
}

// TestConformanceWarmPool runs the suite with the warm pool on: sandboxes
// of the template's shape are claimed spares, others are cold.
func TestConformanceWarmPool(t *testing.T) {
	drivertest.RunOptions(t, newWarmTestDriver, drivertest.Options{
		Leftovers: leftovers,
		KillInit:  killInit,
	})
}

// leftovers lists the host state of sandbox id that still exists.
func leftovers(t *testing.T, id string) []string {
	dir := filepath.Join(drivertest.TempDir(t), "sandboxes", id)
	var left []string
	if _, err := os.Stat(dir); err == nil {
		left = append(left, dir)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, dir+"/") {
			left = append(left, "mount: "+line)
		}
	}
	for _, ctrl := range []string{"memory", "pids", "cpu"} {
		cg := cgroupFile("/"+testCgroupParent+"/"+id, ctrl, "")
		if _, err := os.Stat(cg); err == nil {
			left = append(left, cg)
		}
	}
	return left
}

// killInit kills the sandbox process on the host, as a crash would.
func killInit(t *testing.T, d driver.Driver, id string) {
	g := d.(*Driver)
	state, err := readState(g.paths(id))
	if err != nil {
		t.Fatalf("read state of %s: %v", id, err)
	}
	st, err := g.runsc.state(context.Background(), state.runtimeID(id))
	if err != nil || st.Pid <= 0 {
		t.Fatalf("runsc state %s: %+v, %v", id, st, err)
	}
	if err := unix.Kill(st.Pid, unix.SIGKILL); err != nil {
		t.Fatalf("kill sandbox %d: %v", st.Pid, err)
	}
}

// testWriter sends driver logs to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
