package gvisor

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/drivertest"
	"github.com/denhq/den/internal/driver/warmpool"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/guest"
)

// newCheckpointDir is an empty directory for a checkpoint.
func newCheckpointDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "checkpoint")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// createForSuspend creates a sandbox of the test template, destroyed at
// the end of t.
func createForSuspend(t *testing.T) (*Driver, driver.Spec) {
	return createForSuspendEnv(t, nil)
}

// createForSuspendEnv is createForSuspend with env added to the spec's.
func createForSuspendEnv(t *testing.T, env map[string]string) (*Driver, driver.Spec) {
	t.Helper()
	dd, spec := newTestDriver(t)
	d := dd.(*Driver)
	t.Cleanup(func() { _ = d.Close() })
	spec.ID = "suspend-" + warmpool.RandomHex(4)
	for k, v := range env {
		if spec.Env == nil {
			spec.Env = map[string]string{}
		}
		spec.Env[k] = v
	}
	if _, err := d.Create(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Destroy(context.Background(), spec.ID) })
	return d, spec
}

// TestSuspendReleasesRuntime: a suspended sandbox has no runsc container,
// cgroup or process left, but keeps its directory and rootfs mount.
func TestSuspendReleasesRuntime(t *testing.T) {
	d, spec := createForSuspend(t)
	ctx := context.Background()
	before, err := readState(d.paths(spec.ID))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := d.runsc.state(ctx, before.runtimeID(spec.ID))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Suspend(ctx, spec.ID, newCheckpointDir(t)); err != nil {
		t.Fatal(err)
	}
	assertRuntimeGone(t, d, before.runtimeID(spec.ID), spec.ID)
	deadline := time.Now().Add(10 * time.Second)
	for processLives(pid.Pid) {
		if time.Now().After(deadline) {
			t.Fatalf("sandbox process %d still runs 10s after Suspend", pid.Pid)
		}
		time.Sleep(10 * time.Millisecond) // polling, with the deadline above
	}
	if mounted, err := isMountPoint(d.paths(spec.ID).rootfs()); err != nil || !mounted {
		t.Errorf("rootfs of a suspended sandbox mounted = %v, %v; want mounted (it pins the image layers)", mounted, err)
	}
	st, err := readState(d.paths(spec.ID))
	if err != nil || st.Phase != phaseSuspended || st.CheckpointHook {
		t.Errorf("state of a suspended sandbox: %+v, %v; want suspended, no hook in the kernel (the agent armed)", st, err)
	}
}

// TestSuspendResumeOlderAgent: an agent that cannot listen again by itself
// after a checkpoint (as before den-guest waited on gVisor's checkpoint
// file; here the file it waits on is missing) gets the hook set in the
// kernel on its first checkpoint, and every later checkpoint, resume and
// clone works with it.
func TestSuspendResumeOlderAgent(t *testing.T) {
	d, spec := createForSuspendEnv(t, map[string]string{guest.CheckpointFileEnv: "/nonexistent"})
	ctx := context.Background()
	for i := range 2 {
		if err := d.Checkpoint(ctx, spec.ID, newCheckpointDir(t)); err != nil {
			t.Fatalf("checkpoint %d: %v", i, err)
		}
		if res, err := drivertest.Shell(ctx, d, spec.ID, "echo ok"); err != nil || res.Stdout != "ok\n" {
			t.Fatalf("exec after checkpoint %d: %+v, %v", i, res, err)
		}
		dir := newCheckpointDir(t)
		if err := d.Suspend(ctx, spec.ID, dir); err != nil {
			t.Fatalf("suspend %d: %v", i, err)
		}
		st, err := readState(d.paths(spec.ID))
		if err != nil || !st.CheckpointHook {
			t.Fatalf("state after suspend %d: %+v, %v; want the hook in the kernel", i, st, err)
		}
		if _, err := d.Resume(ctx, spec, dir); err != nil {
			t.Fatalf("resume %d: %v", i, err)
		}
		if res, err := drivertest.Shell(ctx, d, spec.ID, "echo ok"); err != nil || res.Stdout != "ok\n" {
			t.Fatalf("exec after resume %d: %+v, %v", i, res, err)
		}
	}
}

// TestCheckpointFailureKeepsRunning: a checkpoint that fails (its directory
// is on a full file system) leaves the sandbox running with its guest
// agent answering, its processes alive, and no checkpoint files behind.
func TestCheckpointFailureKeepsRunning(t *testing.T) {
	d, spec := createForSuspend(t)
	ctx := context.Background()
	shell(t, d, spec.ID, "echo kept > /root/f && mkdir -p /dev/shm && dd if=/dev/urandom of=/dev/shm/x bs=1M count=8 2>/dev/null")
	small := t.TempDir()
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(small, unix.MNT_DETACH) })
	for _, op := range []string{"Suspend", "Checkpoint"} {
		dir := filepath.Join(small, op)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		call := d.Suspend
		if op == "Checkpoint" {
			call = d.Checkpoint
		}
		err := call(ctx, spec.ID, dir)
		if errdefs.KindOf(err) != errdefs.Unavailable {
			t.Fatalf("%s into a full file system: %v (kind %v), want Unavailable", op, err, errdefs.KindOf(err))
		}
		if st, err := d.Status(ctx, spec.ID); err != nil || !st.Running {
			t.Fatalf("Status after a failed %s = %+v, %v; want running", op, st, err)
		}
		if got := shell(t, d, spec.ID, "cat /root/f"); got != "kept\n" {
			t.Errorf("after a failed %s: %q", op, got)
		}
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			t.Errorf("a failed %s left %d files in its directory", op, len(entries))
		}
	}
	// The sandbox can still be suspended and resumed.
	dir := newCheckpointDir(t)
	if err := d.Suspend(ctx, spec.ID, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Resume(ctx, spec, dir); err != nil {
		t.Fatal(err)
	}
	if got := shell(t, d, spec.ID, "cat /root/f"); got != "kept\n" {
		t.Errorf("after resume: %q", got)
	}
}

// TestResumeAfterGuestUpgrade: a sandbox suspended under one den-guest
// build resumes after the driver restarted with another (it binds the
// build it was checkpointed with), and clones of it do too; new sandboxes
// get the new build.
func TestResumeAfterGuestUpgrade(t *testing.T) {
	d, spec := createForSuspend(t)
	ctx := context.Background()
	shell(t, d, spec.ID, "echo kept > /root/f")
	dir := newCheckpointDir(t)
	if err := d.Suspend(ctx, spec.ID, dir); err != nil {
		t.Fatal(err)
	}
	// Another build: the same program with a byte appended (so another
	// digest), installed at the configured path.
	upgraded := filepath.Join(t.TempDir(), "den-guest")
	data, err := os.ReadFile(d.cfg.GuestBinary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(upgraded, append(data, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	d2, _ := newTestDriverWith(t, func(c *Config) { c.GuestBinary = upgraded })
	g2 := d2.(*Driver)
	t.Cleanup(func() { _ = g2.Close() })
	if g2.guestBin == d.guestBin {
		t.Fatalf("both builds installed at %s", d.guestBin)
	}
	if _, err := g2.Resume(ctx, spec, dir); err != nil {
		t.Fatalf("Resume after the guest binary changed: %v", err)
	}
	if got := shell(t, g2, spec.ID, "cat /root/f"); got != "kept\n" {
		t.Errorf("after resume: %q", got)
	}
	clone := spec
	clone.ID += "-clone"
	if _, err := g2.Clone(ctx, clone, dir); err != nil {
		t.Fatalf("Clone after the guest binary changed: %v", err)
	}
	t.Cleanup(func() { _ = g2.Destroy(context.Background(), clone.ID) })
	fresh := spec
	fresh.ID += "-fresh"
	if _, err := g2.Create(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g2.Destroy(context.Background(), fresh.ID) })
	for id, want := range map[string]string{spec.ID: d.guestBin, clone.ID: d.guestBin, fresh.ID: g2.guestBin} {
		if st, err := readState(g2.paths(id)); err != nil || st.GuestBinary != want {
			t.Errorf("%s binds %q (%v), want %q", id, st.GuestBinary, err, want)
		}
	}
}

// TestResumeWithGuestBinaryGone: Resume fails with FailedPrecondition and
// leaves the sandbox suspended when its guest binary was removed.
func TestResumeWithGuestBinaryGone(t *testing.T) {
	d, spec := createForSuspend(t)
	ctx := context.Background()
	dir := newCheckpointDir(t)
	if err := d.Suspend(ctx, spec.ID, dir); err != nil {
		t.Fatal(err)
	}
	st, err := readState(d.paths(spec.ID))
	if err != nil {
		t.Fatal(err)
	}
	st.GuestBinary = filepath.Join(t.TempDir(), "gone", "den-guest")
	if _, err := writeState(d.paths(spec.ID), st); err != nil {
		t.Fatal(err)
	}
	_, err = d.Resume(ctx, spec, dir)
	if errdefs.KindOf(err) != errdefs.FailedPrecondition {
		t.Fatalf("Resume without its guest binary: %v (kind %v), want FailedPrecondition", err, errdefs.KindOf(err))
	}
	if s, err := d.Status(ctx, spec.ID); err != nil || s.Reason != driver.ReasonSuspended {
		t.Errorf("Status after the failed Resume = %+v, %v", s, err)
	}
}

// processLives reports whether pid exists and is not a zombie (a killed
// sandbox is reaped by whoever inherited it, not by the driver).
func processLives(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || !strings.HasPrefix(s[i:], ") Z")
}

// markSuspendedAfterCheckpoint checkpoints sandbox id into a new
// directory, the sandbox left running, and marks it suspended: the state
// a suspend leaves when its process dies before deleting the container.
func markSuspendedAfterCheckpoint(t *testing.T, d *Driver, id string) string {
	t.Helper()
	dir := newCheckpointDir(t)
	if err := d.Checkpoint(context.Background(), id, dir); err != nil {
		t.Fatal(err)
	}
	st, err := readState(d.paths(id))
	if err != nil {
		t.Fatal(err)
	}
	st.Phase = phaseSuspended
	if _, err := writeState(d.paths(id), st); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestSuspendInterruptedBeforeDelete: a suspend whose process died after
// marking the sandbox suspended but before deleting its runsc container
// leaves a container that still runs. Resume deletes it and restores
// under the same ID; Recover deletes it too (it holds memory), and the
// sandbox stays suspended until resumed.
func TestSuspendInterruptedBeforeDelete(t *testing.T) {
	d, spec := createForSuspend(t)
	ctx := context.Background()
	shell(t, d, spec.ID, "echo one > /root/f")
	dir := markSuspendedAfterCheckpoint(t, d, spec.ID)
	h, err := d.Resume(ctx, spec, dir)
	if err != nil {
		t.Fatalf("Resume with the checkpointed container still running: %v", err)
	}
	if got := shell(t, d, spec.ID, "cat /root/f && echo two >> /root/f"); got != "one\n" {
		t.Errorf("after resume: %q", got)
	}
	dir = markSuspendedAfterCheckpoint(t, d, spec.ID)
	st, err := readState(d.paths(spec.ID))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Recover(ctx, h); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	assertRuntimeGone(t, d, st.runtimeID(spec.ID), spec.ID)
	if s, err := d.Status(ctx, spec.ID); err != nil || s.Reason != driver.ReasonSuspended {
		t.Fatalf("Status after Recover = %+v, %v; want suspended", s, err)
	}
	if _, err := d.Resume(ctx, spec, dir); err != nil {
		t.Fatal(err)
	}
	if got := shell(t, d, spec.ID, "cat /root/f"); got != "one\ntwo\n" {
		t.Errorf("after the second resume: %q", got)
	}
}
