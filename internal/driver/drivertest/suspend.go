package drivertest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/denhq/den/api/envd/process"
	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
)

// suspendTests are the cases of driver.Suspender; each skips for drivers
// without it.
func (s *suite) suspendTests() []testCase {
	return []testCase{
		{"SuspendResume", s.testSuspendResume},
		{"SuspendKeepsState", s.testSuspendKeepsState},
		{"SuspendResumeRepeated", s.testSuspendResumeRepeated},
		{"SuspendUnknown", s.testSuspendUnknown},
		{"SuspendPreconditions", s.testSuspendPreconditions},
		{"ResumeBadCheckpoint", s.testResumeBadCheckpoint},
		{"SuspendDestroy", s.testSuspendDestroy},
		{"SuspendRecover", s.testSuspendRecover},
		{"CloneIndependent", s.testCloneIndependent},
		{"CloneInvalid", s.testCloneInvalid},
		{"CheckpointLeavesRunning", s.testCheckpointLeavesRunning},
	}
}

// testSuspendResume is the lifecycle of a suspended sandbox as the
// contract states it, for every driver.
func (s *suite) testSuspendResume(t *testing.T) {
	d, spec := s.setup(t)
	sd := suspender(t, d)
	ctx := testCtx(t)
	s.create(t, ctx, d, spec)
	// A Wait in progress (the node watches every sandbox) must not take
	// the suspension for a death.
	waited := make(chan driver.Status, 1)
	if w, ok := d.(driver.Waiter); ok {
		go func() {
			st, err := w.Wait(ctx, spec.ID)
			if err != nil {
				t.Errorf("Wait across Suspend: %v", err)
			}
			waited <- st
		}()
	}
	dir := suspend(t, ctx, sd, spec.ID)
	if _, ok := d.(driver.Waiter); ok {
		if st := <-waited; st.Running || st.Reason != driver.ReasonSuspended {
			t.Errorf("Wait across Suspend returned %+v, want Reason %q", st, driver.ReasonSuspended)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) == 0 {
		t.Errorf("Suspend wrote nothing into %s", dir)
	}
	assertSuspended(t, ctx, d, spec.ID)
	if l, ok := d.(driver.Lister); ok {
		if ids, err := l.List(ctx); err != nil || !slices.Contains(ids, spec.ID) {
			t.Errorf("List = %q, %v; want it to hold the suspended %s", ids, err, spec.ID)
		}
	}
	if sr, ok := d.(driver.StatsReader); ok {
		if _, err := sr.Stats(ctx, spec.ID); err != nil {
			t.Errorf("Stats of a suspended sandbox: %v", err)
		}
	}
	_, err := d.Create(ctx, spec)
	assertKind(t, "Create of a suspended sandbox's id", err, errdefs.FailedPrecondition)
	before := treeSnapshot(t, []string{dir})
	resume(t, ctx, sd, spec, dir)
	assertCheckpointUnchanged(t, dir, before, "Resume")
	assertRunning(t, ctx, d, spec.ID)
}

// testSuspendKeepsState checks that one suspend and resume keeps a
// sandbox's processes (a counter, a PTY shell, a TCP server), files,
// environment and working directories.
func (s *suite) testSuspendKeepsState(t *testing.T) {
	d, spec := s.setup(t)
	sd := suspender(t, d)
	requireLiveCheckpoint(t, d, "processes and files")
	ctx := testCtx(t)
	spec.Env["DEN_SUSPEND_VAR"] = "kept"
	s.create(t, ctx, d, spec)

	counterPID := startCounter(t, ctx, d, spec.ID)
	sum := mustShell(t, ctx, d, spec.ID, "head -c 4194304 /dev/urandom > /root/blob && mkdir -p /srv/www && echo served > /srv/www/index.html && sha256sum /root/blob").Stdout
	ptyTag, envTag, httpTag := "pty", "env", "httpd"
	startBackground(t, ctx, d, spec.ID, &process.StartRequest{
		Process: &process.ProcessConfig{Cmd: "/bin/sh"},
		Pty:     &process.PTY{Size: &process.PTY_Size{Cols: 80, Rows: 24}},
		Tag:     &ptyTag,
	})
	sendPTY(t, ctx, d, spec.ID, ptyTag, "X=42; cd /srv\n")
	cwd := "/tmp"
	envPID := startBackground(t, ctx, d, spec.ID, &process.StartRequest{
		Process: &process.ProcessConfig{Cmd: "/bin/sleep", Args: []string{"100000"}, Cwd: &cwd, Envs: map[string]string{"DEN_PROC_VAR": "proc"}},
		Tag:     &envTag,
	})
	startBackground(t, ctx, d, spec.ID, &process.StartRequest{
		Process: &process.ProcessConfig{Cmd: "/bin/httpd", Args: []string{"-f", "-p", "127.0.0.1:8080", "-h", "/srv/www"}},
		Tag:     &httpTag,
	})
	fetch := "wget -q -O - http://127.0.0.1:8080/index.html"
	eventually(t, ctx, "httpd serves", func() bool {
		res, err := Shell(ctx, d, spec.ID, fetch)
		return err == nil && res.Stdout == "served\n"
	})
	count := readCounter(t, ctx, d, spec.ID)
	procs := processes(t, ctx, d, spec.ID)

	resume(t, ctx, sd, spec, suspend(t, ctx, sd, spec.ID))

	t.Run("Processes", func(t *testing.T) {
		if got := processes(t, ctx, d, spec.ID); got["counter"] != counterPID || got[ptyTag] != procs[ptyTag] || got[httpTag] != procs[httpTag] {
			t.Errorf("processes after resume = %v, want %v", got, procs)
		}
		assertCounterContinues(t, ctx, d, spec.ID, count)
	})
	t.Run("Files", func(t *testing.T) {
		if got := mustShell(t, ctx, d, spec.ID, "sha256sum /root/blob").Stdout; got != sum {
			t.Errorf("checksum after resume %q, want %q", got, sum)
		}
	})
	t.Run("EnvAndCwd", func(t *testing.T) {
		if got := mustShell(t, ctx, d, spec.ID, `echo "$DEN_SUSPEND_VAR"`).Stdout; got != "kept\n" {
			t.Errorf("sandbox env after resume: %q, want %q", got, "kept\n")
		}
		script := "tr '\\0' '\\n' < /proc/" + itoa(int64(envPID)) + "/environ | grep DEN_PROC_VAR; readlink /proc/" + itoa(int64(envPID)) + "/cwd"
		if got := mustShell(t, ctx, d, spec.ID, script).Stdout; got != "DEN_PROC_VAR=proc\n/tmp\n" {
			t.Errorf("process env and cwd after resume: %q", got)
		}
	})
	t.Run("PTY", func(t *testing.T) {
		sendPTY(t, ctx, d, spec.ID, ptyTag, "echo \"$X-$PWD\" > /tmp/pty-out\n")
		eventually(t, ctx, "the PTY shell kept its variable and directory", func() bool {
			res, err := Shell(ctx, d, spec.ID, "cat /tmp/pty-out 2>/dev/null")
			return err == nil && res.Stdout == "42-/srv\n"
		})
	})
	t.Run("TCPListener", func(t *testing.T) {
		if got := mustShell(t, ctx, d, spec.ID, fetch).Stdout; got != "served\n" {
			t.Errorf("httpd after resume answered %q", got)
		}
	})
}

// testSuspendResumeRepeated suspends and resumes one sandbox 20 times.
func (s *suite) testSuspendResumeRepeated(t *testing.T) {
	d, spec := s.setup(t)
	sd := suspender(t, d)
	ctx := testCtx(t)
	s.create(t, ctx, d, spec)
	live := d.Capabilities().Isolation != "none"
	count := 0
	if live {
		startCounter(t, ctx, d, spec.ID)
	}
	for i := range 20 {
		resume(t, ctx, sd, spec, suspend(t, ctx, sd, spec.ID))
		if !live {
			assertRunning(t, ctx, d, spec.ID)
			continue
		}
		now := readCounter(t, ctx, d, spec.ID)
		if now < count {
			t.Fatalf("cycle %d: counter went back from %d to %d", i+1, count, now)
		}
		count = now
	}
	if live {
		assertCounterContinues(t, ctx, d, spec.ID, count)
	}
}

func (s *suite) testSuspendUnknown(t *testing.T) {
	d, spec := s.setup(t)
	sd := suspender(t, d)
	ctx := testCtx(t)
	assertKind(t, "Suspend of an unknown id", sd.Suspend(ctx, spec.ID, checkpointDir(t)), errdefs.NotFound)
	assertKind(t, "Checkpoint of an unknown id", sd.Checkpoint(ctx, spec.ID, checkpointDir(t)), errdefs.NotFound)
	_, err := sd.Resume(ctx, spec, checkpointDir(t))
	assertKind(t, "Resume of an unknown id", err, errdefs.NotFound)
	assertKind(t, "Suspend with an invalid id", sd.Suspend(ctx, "../x", checkpointDir(t)), errdefs.InvalidArgument)
}

// testSuspendPreconditions checks the FailedPrecondition and
// InvalidArgument cases of Suspend and Resume.
func (s *suite) testSuspendPreconditions(t *testing.T) {
	d, spec := s.setup(t)
	sd := suspender(t, d)
	ctx := testCtx(t)
	s.create(t, ctx, d, spec)
	_, err := sd.Resume(ctx, spec, checkpointDir(t))
	assertKind(t, "Resume of a running sandbox", err, errdefs.FailedPrecondition)
	full := checkpointDir(t)
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	assertKind(t, "Suspend into a non-empty dir", sd.Suspend(ctx, spec.ID, full), errdefs.InvalidArgument)
	assertRunning(t, ctx, d, spec.ID)
	dir := suspend(t, ctx, sd, spec.ID)
	assertKind(t, "Suspend of a suspended sandbox", sd.Suspend(ctx, spec.ID, checkpointDir(t)), errdefs.FailedPrecondition)
	assertKind(t, "Checkpoint of a suspended sandbox", sd.Checkpoint(ctx, spec.ID, checkpointDir(t)), errdefs.FailedPrecondition)
	resume(t, ctx, sd, spec, dir)

	if !d.Capabilities().UpperDir {
		return // no sandbox has a caller's upper dir (see testUpperDir)
	}
	upper := spec
	upper.ID += "-upper"
	upper.UpperDir = filepath.Join(t.TempDir(), "upper")
	if err := os.Mkdir(upper.UpperDir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.create(t, ctx, d, upper)
	assertKind(t, "Suspend of a sandbox with an upper dir", sd.Suspend(ctx, upper.ID, checkpointDir(t)), errdefs.FailedPrecondition)
	assertRunning(t, ctx, d, upper.ID)
}

// testResumeBadCheckpoint resumes from a missing, an empty and a corrupt
// directory: each fails, the sandbox stays suspended with nothing running,
// and the good checkpoint still resumes it.
func (s *suite) testResumeBadCheckpoint(t *testing.T) {
	d, spec := s.setup(t)
	sd := suspender(t, d)
	ctx := testCtx(t)
	s.create(t, ctx, d, spec)
	dir := suspend(t, ctx, sd, spec.ID)
	bad := map[string]string{
		"missing": filepath.Join(t.TempDir(), "missing"),
		"empty":   checkpointDir(t),
		"corrupt": corruptCopy(t, dir),
	}
	for _, name := range []string{"missing", "empty", "corrupt"} {
		before := treeSnapshot(t, []string{bad[name]})
		if _, err := sd.Resume(ctx, spec, bad[name]); err == nil {
			t.Fatalf("Resume from a %s checkpoint succeeded", name)
		} else if name != "corrupt" {
			assertKind(t, "Resume from a "+name+" checkpoint", err, errdefs.InvalidArgument)
		}
		assertCheckpointUnchanged(t, bad[name], before, "a failed Resume")
		assertSuspended(t, ctx, d, spec.ID)
	}
	resume(t, ctx, sd, spec, dir)
	assertRunning(t, ctx, d, spec.ID)
}

// testSuspendDestroy destroys a suspended sandbox: no host state is left
// but the checkpoint, which belongs to the caller.
func (s *suite) testSuspendDestroy(t *testing.T) {
	d, spec := s.setup(t)
	sd := suspender(t, d)
	ctx := testCtx(t)
	s.create(t, ctx, d, spec)
	dir := suspend(t, ctx, sd, spec.ID)
	before := treeSnapshot(t, []string{dir})
	if err := d.Destroy(ctx, spec.ID); err != nil {
		t.Fatalf("Destroy of a suspended sandbox: %v", err)
	}
	_, err := d.Status(ctx, spec.ID)
	assertKind(t, "Status after Destroy", err, errdefs.NotFound)
	_, err = sd.Resume(ctx, spec, dir)
	assertKind(t, "Resume after Destroy", err, errdefs.NotFound)
	s.assertNoLeftovers(t, spec.ID)
	assertCheckpointUnchanged(t, dir, before, "Destroy")
}

// testSuspendRecover recovers a suspended sandbox in a new driver instance
// (from the handle Create returned) and resumes it there.
func (s *suite) testSuspendRecover(t *testing.T) {
	d, spec := s.setup(t)
	sd := suspender(t, d)
	ctx := testCtx(t)
	h := s.create(t, ctx, d, spec)
	live := d.Capabilities().Isolation != "none"
	count := 0
	if live {
		startCounter(t, ctx, d, spec.ID)
		count = readCounter(t, ctx, d, spec.ID)
	}
	dir := suspend(t, ctx, sd, spec.ID)
	raw, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := s.newDriver(t) // same t: same configuration, new instance
	defer d2.Close()
	var persisted driver.Handle
	if err := json.Unmarshal(raw, &persisted); err != nil {
		t.Fatal(err)
	}
	if err := d2.Recover(ctx, &persisted); err != nil {
		t.Fatalf("Recover of a suspended sandbox: %v", err)
	}
	assertSuspended(t, ctx, d2, spec.ID)
	h2 := resume(t, ctx, d2.(driver.Suspender), spec, dir)
	assertRunning(t, ctx, d2, spec.ID)
	if live {
		assertCounterContinues(t, ctx, d2, spec.ID, count)
	}
	// The handle Resume returned recovers the running sandbox.
	d3, _ := s.newDriver(t)
	defer d3.Close()
	if err := d3.Recover(ctx, h2); err != nil {
		t.Fatalf("Recover with the handle Resume returned: %v", err)
	}
}

// testCloneIndependent clones a suspended sandbox twice: the clones run
// from the saved point, and no sandbox sees another's writes.
func (s *suite) testCloneIndependent(t *testing.T) {
	d, spec := s.setup(t)
	sd := suspender(t, d)
	ctx := testCtx(t)
	s.create(t, ctx, d, spec)
	live := d.Capabilities().Isolation != "none"
	count := 0
	if live {
		mustShell(t, ctx, d, spec.ID, "echo source > /root/origin")
		startCounter(t, ctx, d, spec.ID)
		count = readCounter(t, ctx, d, spec.ID)
	}
	dir := suspend(t, ctx, sd, spec.ID)
	before := treeSnapshot(t, []string{dir})
	a, b := spec, spec
	a.ID, b.ID = spec.ID+"-a", spec.ID+"-b"
	s.clone(t, ctx, d, a, dir)
	s.clone(t, ctx, d, b, dir)
	resume(t, ctx, sd, spec, dir)
	assertCheckpointUnchanged(t, dir, before, "Clone and Resume")
	for _, id := range []string{spec.ID, a.ID, b.ID} {
		assertRunning(t, ctx, d, id)
	}
	if !live {
		return
	}
	for _, id := range []string{a.ID, b.ID} {
		if got := mustShell(t, ctx, d, id, "cat /root/origin; hostname").Stdout; got != "source\n"+id+"\n" {
			t.Errorf("clone %s: origin file and hostname %q", id, got)
		}
		assertCounterContinues(t, ctx, d, id, count)
		mustShell(t, ctx, d, id, "echo "+id+" > /root/mine && echo "+id+" > /root/origin")
	}
	for _, id := range []string{spec.ID, a.ID, b.ID} {
		want := "source\n"
		if id != spec.ID {
			want = id + "\n" + id + "\n"
		}
		if got := mustShell(t, ctx, d, id, "cat /root/origin; cat /root/mine 2>/dev/null; true").Stdout; got != want {
			t.Errorf("sandbox %s sees %q, want only its own writes %q", id, got, want)
		}
	}
}

// testCloneInvalid checks Clone's errors: an existing id, a bad checkpoint.
func (s *suite) testCloneInvalid(t *testing.T) {
	d, spec := s.setup(t)
	sd := suspender(t, d)
	ctx := testCtx(t)
	s.create(t, ctx, d, spec)
	dir := checkpointDir(t)
	if err := sd.Checkpoint(ctx, spec.ID, dir); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	_, err := sd.Clone(ctx, spec, dir)
	assertKind(t, "Clone into an existing id", err, errdefs.AlreadyExists)
	c := spec
	c.ID += "-clone"
	_, err = sd.Clone(ctx, c, checkpointDir(t))
	assertKind(t, "Clone from an empty dir", err, errdefs.InvalidArgument)
	_, err = d.Status(ctx, c.ID)
	assertKind(t, "Status after a failed Clone", err, errdefs.NotFound)
	s.assertNoLeftovers(t, c.ID)
	if _, err := sd.Clone(ctx, c, corruptCopy(t, dir)); err == nil {
		t.Fatalf("Clone from a corrupt checkpoint succeeded")
	}
	_, err = d.Status(ctx, c.ID)
	assertKind(t, "Status after a failed Clone", err, errdefs.NotFound)
	s.assertNoLeftovers(t, c.ID)
}

// testCheckpointLeavesRunning checkpoints a running sandbox (a fork): it
// keeps running, and a clone starts from the checkpoint, not from later.
func (s *suite) testCheckpointLeavesRunning(t *testing.T) {
	d, spec := s.setup(t)
	sd := suspender(t, d)
	ctx := testCtx(t)
	s.create(t, ctx, d, spec)
	live := d.Capabilities().Isolation != "none"
	if live {
		mustShell(t, ctx, d, spec.ID, "echo before > /root/state")
	}
	dir := checkpointDir(t)
	if err := sd.Checkpoint(ctx, spec.ID, dir); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	assertRunning(t, ctx, d, spec.ID)
	if live {
		mustShell(t, ctx, d, spec.ID, "echo after > /root/state")
	}
	fork := spec
	fork.ID += "-fork"
	s.clone(t, ctx, d, fork, dir)
	assertRunning(t, ctx, d, fork.ID)
	// A second checkpoint of the same sandbox works too.
	if err := sd.Checkpoint(ctx, spec.ID, checkpointDir(t)); err != nil {
		t.Fatalf("second Checkpoint: %v", err)
	}
	if !live {
		return
	}
	if got := mustShell(t, ctx, d, fork.ID, "cat /root/state").Stdout; got != "before\n" {
		t.Errorf("fork sees %q, want the state at the checkpoint", got)
	}
	if got := strings.TrimSpace(mustShell(t, ctx, d, spec.ID, "cat /root/state").Stdout); got != "after" {
		t.Errorf("source sees %q after the fork, want its own write", got)
	}
}
