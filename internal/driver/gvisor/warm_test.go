package gvisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/drivertest"
	"github.com/denhq/den/internal/driver/warmpool"
	"github.com/denhq/den/internal/testenv"
)

// newWarmDriver is a driver with a warm pool of one spare per shape, its
// template spec with a fresh ID, and a cleanup that closes it.
func newWarmDriver(t *testing.T) (*Driver, driver.Spec) {
	t.Helper()
	d, spec := newTestDriverPool(t, 1)
	t.Cleanup(func() { _ = d.Close() })
	spec.ID = fmt.Sprintf("warm-%d-%d", os.Getpid(), time.Now().UnixNano())
	return d.(*Driver), spec
}

// createT creates spec on d and destroys it at the end of t.
func createT(t *testing.T, d *Driver, spec driver.Spec) {
	t.Helper()
	if _, err := d.Create(context.Background(), spec); err != nil {
		t.Fatalf("Create(%s): %v", spec.ID, err)
	}
	t.Cleanup(func() { _ = d.Destroy(context.Background(), spec.ID) })
}

func shell(t *testing.T, d *Driver, id, script string) string {
	t.Helper()
	res, err := drivertest.Shell(context.Background(), d, id, script)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("shell %q in %s: %+v, %v", script, id, res, err)
	}
	return res.Stdout
}

// TestWarmClaimAppliesSpec claims a spare and checks it looks like a fresh
// sandbox of the spec: env, hostname, start time, an untouched root
// filesystem, its own boot ID; and that Destroy removes all of it.
func TestWarmClaimAppliesSpec(t *testing.T) {
	d, spec := newWarmDriver(t)
	warmUp(t, d, spec, 1)
	claimed := spec
	claimed.Env = map[string]string{"DEN_CLAIM_VAR": "from spec", "IMAGE_ENV": "overridden"}
	claimed.Hostname = "den-warm"
	beforeClaim := time.Now()
	createT(t, d, claimed)
	if n := d.claims.Load(); n != 1 {
		t.Fatalf("claims = %d after a Create with a ready spare, want 1", n)
	}
	got := shell(t, d, claimed.ID, `echo "$DEN_CLAIM_VAR|$IMAGE_ENV"; hostname`)
	if want := "from spec|overridden\nden-warm\n"; got != want {
		t.Errorf("env and hostname in the claimed sandbox = %q, want %q", got, want)
	}
	st, err := d.Status(context.Background(), claimed.ID)
	if err != nil || !st.Running || st.StartedAt.Before(beforeClaim.Add(-time.Second)) {
		t.Errorf("Status = %+v, %v; want running, started at the claim (after %v)", st, err, beforeClaim)
	}

	cold := spec
	cold.ID += "-cold"
	cold.MemoryMB++ // another shape: cold
	createT(t, d, cold)
	const probe = "ls -A /root /tmp /home; cat /proc/sys/kernel/random/boot_id"
	a, b := strings.Split(shell(t, d, claimed.ID, probe), "\n"), strings.Split(shell(t, d, cold.ID, probe), "\n")
	if strings.Join(a[:len(a)-2], "\n") != strings.Join(b[:len(b)-2], "\n") {
		t.Errorf("claimed sandbox's files differ from a cold one's:\n%q\n%q", a, b)
	}
	if a[len(a)-2] == b[len(b)-2] {
		t.Errorf("claimed and cold sandboxes share boot ID %s", a[len(a)-2])
	}
	shell(t, d, claimed.ID, "dd if=/dev/zero of=/root/f bs=1M count=4 2>/dev/null")
	if s, err := d.Stats(context.Background(), claimed.ID); err != nil || s.DiskUsedBytes < 4<<20 || s.MemoryBytes == 0 {
		t.Errorf("Stats of the claimed sandbox = %+v, %v; want memory and >= 4 MiB of disk used", s, err)
	}
	assertDestroyedClaim(t, d, claimed.ID)
}

// assertDestroyedClaim destroys claimed sandbox id and checks its
// directory, runsc container and cgroup (named after the spare) are gone.
func assertDestroyedClaim(t *testing.T, d *Driver, id string) {
	t.Helper()
	st, err := readState(d.paths(id))
	if err != nil || st.RuntimeID == id || !strings.HasPrefix(st.RuntimeID, warmpool.IDPrefix) {
		t.Fatalf("state of claimed %s: %+v, %v; want the spare's runtime ID", id, st, err)
	}
	if err := d.Destroy(context.Background(), id); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if _, err := os.Stat(d.paths(id).dir); !os.IsNotExist(err) {
		t.Errorf("sandbox dir after Destroy: %v", err)
	}
	assertRuntimeGone(t, d, st.RuntimeID, strings.TrimSuffix(st.RuntimeID, runtimeIDSuffix))
}

// assertRuntimeGone checks runsc container rid and its cgroup (named
// cgroupName) are gone.
func assertRuntimeGone(t *testing.T, d *Driver, rid, cgroupName string) {
	t.Helper()
	if _, err := d.runsc.state(context.Background(), rid); err == nil {
		t.Errorf("runsc container %s still exists", rid)
	}
	for _, ctrl := range []string{"memory", "pids", "cpu"} {
		if _, err := os.Stat(cgroupFile(cgroupPath(d.cfg, cgroupName), ctrl, "")); err == nil {
			t.Errorf("cgroup %s of %s still exists", ctrl, rid)
		}
	}
}

// TestWarmShapeMismatchGoesCold checks a spec of another shape is created
// cold and leaves the ready spare alone, while env and hostname (not part
// of the shape) do not prevent a claim.
func TestWarmShapeMismatchGoesCold(t *testing.T) {
	d, spec := newWarmDriver(t)
	warmUp(t, d, spec, 1)
	other := spec
	other.DiskMB *= 2
	createT(t, d, other)
	if n := d.claims.Load(); n != 0 {
		t.Fatalf("claims = %d after a Create of another shape, want 0", n)
	}
	if n := d.pool.ReadyCount(warmpool.ShapeOf(spec).Key); n != 1 {
		t.Errorf("ready spares of the warmed shape = %d, want 1", n)
	}
	if got := shell(t, d, other.ID, "hostname"); got != other.ID+"\n" {
		t.Errorf("hostname of the cold sandbox = %q", got)
	}
}

// TestWarmUpperDirGoesCold checks sandboxes with an UpperDir neither claim
// a spare of their shape nor make the pool keep spares of theirs.
func TestWarmUpperDirGoesCold(t *testing.T) {
	d, spec := newWarmDriver(t)
	warmUp(t, d, spec, 1)
	// Neither ID is a prefix of the other: runsc resolves IDs by prefix.
	same := spec
	same.ID += "-same"
	same.UpperDir = t.TempDir()
	createT(t, d, same)
	other := spec
	other.ID += "-othr"
	other.MemoryMB++
	other.UpperDir = t.TempDir()
	createT(t, d, other)
	if n := d.claims.Load(); n != 0 {
		t.Fatalf("claims = %d after Creates with an UpperDir, want 0", n)
	}
	if n := d.pool.ReadyCount(warmpool.ShapeOf(spec).Key); n != 1 {
		t.Errorf("ready spares of the warmed shape = %d, want 1", n)
	}
	shapes := len(d.pool.Shapes())
	if shapes != 1 {
		t.Errorf("pool shapes = %d after Creates with an UpperDir, want only the warmed one", shapes)
	}
	shell(t, d, same.ID, "echo x > /root/f")
	if err := d.Destroy(context.Background(), same.ID); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(same.UpperDir, "root/f")); err != nil || string(data) != "x\n" {
		t.Errorf("root/f in the upper dir = %q, %v", data, err)
	}
}

// TestWarmCloseDestroysSpares checks Close leaves no spare behind.
func TestWarmCloseDestroysSpares(t *testing.T) {
	d, spec := newWarmDriver(t)
	warmUp(t, d, spec, 1)
	spares := readySpares(d)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoSpares(t, d)
	for _, sp := range spares {
		assertRuntimeGone(t, d, runtimeIDFor(sp.id), sp.id)
	}
}

// readySpares lists the pool's ready spares.
func readySpares(d *Driver) []spare { return d.pool.Ready() }

// assertNoSpares checks StateDir/spares holds no spare: nothing but d's
// own (empty, locked) spare set while d is open.
func assertNoSpares(t *testing.T, d *Driver) {
	t.Helper()
	left, err := os.ReadDir(d.sparesDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		if filepath.Join(d.sparesDir(), e.Name()) != d.spares.Dir {
			t.Errorf("spares dir holds %s, want only this driver's set %s", e.Name(), d.spares.Dir)
			continue
		}
		own, err := os.ReadDir(d.spares.Dir)
		if err != nil || len(own) != 1 || own[0].Name() != warmpool.LockName {
			t.Errorf("this driver's spare set holds %v (%v), want only its lock", own, err)
		}
	}
}

// warmHelperEnv makes the test binary a driver that warms a spare, prints
// its runtime ID and waits to be killed.
const warmHelperEnv = "DEN_GVISOR_WARM_HELPER"

// TestWarmSparesOfKilledDriverAreDestroyed kills a driver process that
// holds a spare; New on the same StateDir destroys it.
func TestWarmSparesOfKilledDriverAreDestroyed(t *testing.T) {
	if os.Getenv(warmHelperEnv) != "" {
		warmHelper(t)
		return
	}
	testenv.RequireRoot(t)
	stateDir := t.TempDir()
	line, err := runKilledHelper(t, "TestWarmSparesOfKilledDriverAreDestroyed", warmHelperEnv, stateDir)
	spareID := strings.TrimSpace(line)
	if err != nil || !strings.HasPrefix(spareID, warmpool.IDPrefix) {
		t.Fatalf("read spare ID from helper: %q, %v", line, err)
	}
	d, err := New(Config{RunscPath: testenv.Runsc(t), GuestBinary: testenv.GuestBinary(t), StateDir: stateDir, CgroupParent: testCgroupParent, Platform: PlatformSystrap})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	assertNoSpares(t, d)
	assertRuntimeGone(t, d, runtimeIDFor(spareID), spareID)
}

// warmHelper warms one spare, prints its ID and waits for SIGKILL.
func warmHelper(t *testing.T) {
	d, err := New(Config{RunscPath: os.Getenv("DEN_RUNSC"), GuestBinary: os.Getenv("DEN_GUEST_BIN"), StateDir: os.Getenv("DEN_STATE_DIR"), CgroupParent: testCgroupParent, Platform: PlatformSystrap, WarmPool: 1})
	if err != nil {
		t.Fatal(err)
	}
	spec := driver.Spec{Image: driver.Image{Layers: []string{os.Getenv("DEN_ROOTFS")}}, MemoryMB: 256, DiskMB: 64}
	warmUp(t, d, spec, 1)
	sp := readySpares(d)
	if _, err := os.Stat(filepath.Join(d.spares.Dir, sp[0].id)); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("%s\n", sp[0].id)
	select {} // until SIGKILL
}

// TestWarmupRunsBeforeClaim: the warm-up script has run in a spare by the
// time it is claimed.
func TestWarmupRunsBeforeClaim(t *testing.T) {
	d, spec := newTestDriverWith(t, func(c *Config) {
		c.WarmPool = 1
		c.WarmupScript = "echo warmed > /.den/run/warmed"
	})
	t.Cleanup(func() { d.Close() })
	g := d.(*Driver)
	warmUp(t, g, spec, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec.ID = "warmed"
	if _, err := d.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	defer d.Destroy(context.Background(), spec.ID)
	if n := g.claims.Load(); n != 1 {
		t.Fatalf("claims = %d, want the create to claim the warm spare", n)
	}
	got, err := os.ReadFile(filepath.Join(drivertest.TempDir(t), "sandboxes", spec.ID, "run", "warmed"))
	if err != nil || string(got) != "warmed\n" {
		t.Fatalf("warm-up marker in the claimed sandbox: %q, %v", got, err)
	}
}
