package drivertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/api/envd/process"
	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
)

// suspender returns d as a Suspender or skips t.
func suspender(t *testing.T, d driver.Driver) driver.Suspender {
	t.Helper()
	sd, ok := d.(driver.Suspender)
	if !ok {
		t.Skipf("driver %s does not implement Suspender", d.Capabilities().Name)
	}
	return sd
}

// requireLiveCheckpoint skips t for drivers whose checkpoints do not hold
// processes and files: those without isolation (the fake), whose
// processes are the host's.
func requireLiveCheckpoint(t *testing.T, d driver.Driver, what string) {
	t.Helper()
	if d.Capabilities().Isolation == "none" {
		t.Skipf("driver %s has isolation \"none\": its processes and files are the host's, and a checkpoint cannot hold %s", d.Capabilities().Name, what)
	}
}

// checkpointDir is a new, empty directory for a checkpoint.
func checkpointDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "checkpoint")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// suspend suspends id into a new directory and returns it.
func suspend(t *testing.T, ctx context.Context, sd driver.Suspender, id string) string {
	t.Helper()
	dir := checkpointDir(t)
	if err := sd.Suspend(ctx, id, dir); err != nil {
		t.Fatalf("Suspend(%s): %v", id, err)
	}
	return dir
}

// resume resumes spec from dir and checks the handle.
func resume(t *testing.T, ctx context.Context, sd driver.Suspender, spec driver.Spec, dir string) *driver.Handle {
	t.Helper()
	h, err := sd.Resume(ctx, spec, dir)
	if err != nil {
		t.Fatalf("Resume(%s): %v", spec.ID, err)
	}
	if h.ID != spec.ID {
		t.Fatalf("Resume returned a handle for %q, want %q", h.ID, spec.ID)
	}
	return h
}

// clone clones spec from dir and destroys it at the end of t.
func (s *suite) clone(t *testing.T, ctx context.Context, d driver.Driver, spec driver.Spec, dir string) {
	t.Helper()
	h, err := d.(driver.Suspender).Clone(ctx, spec, dir)
	if err != nil {
		t.Fatalf("Clone(%s): %v", spec.ID, err)
	}
	t.Cleanup(func() {
		if err := d.Destroy(context.Background(), spec.ID); err != nil {
			t.Errorf("Destroy(%s) at cleanup: %v", spec.ID, err)
		}
	})
	if h.ID != spec.ID {
		t.Fatalf("Clone returned a handle for %q, want %q", h.ID, spec.ID)
	}
}

// assertSuspended checks what the contract says of a suspended sandbox:
// Status, DialGuest and Wait.
func assertSuspended(t *testing.T, ctx context.Context, d driver.Driver, id string) {
	t.Helper()
	st, err := d.Status(ctx, id)
	if err != nil || st.Running || st.Reason != driver.ReasonSuspended {
		t.Fatalf("Status of a suspended sandbox = %+v, %v; want not running, Reason %q", st, err, driver.ReasonSuspended)
	}
	if st.StartedAt.IsZero() {
		t.Errorf("Status of a suspended sandbox has no StartedAt")
	}
	if c, err := d.DialGuest(ctx, id); err == nil {
		c.Close()
		t.Errorf("DialGuest of a suspended sandbox succeeded")
	} else if !errdefs.Is(err, errdefs.Unavailable) {
		t.Errorf("DialGuest of a suspended sandbox: %v (kind %v), want Unavailable", err, errdefs.KindOf(err))
	}
	if w, ok := d.(driver.Waiter); ok {
		st, err := w.Wait(ctx, id) // returns at once: the test context bounds it
		if err != nil || st.Running || st.Reason != driver.ReasonSuspended {
			t.Errorf("Wait on a suspended sandbox = %+v, %v; want Reason %q", st, err, driver.ReasonSuspended)
		}
	}
}

// assertRunning checks Status says running and a command runs.
func assertRunning(t *testing.T, ctx context.Context, d driver.Driver, id string) {
	t.Helper()
	if st, err := d.Status(ctx, id); err != nil || !st.Running {
		t.Fatalf("Status(%s) = %+v, %v; want running", id, st, err)
	}
	if res := mustShell(t, ctx, d, id, "echo up"); res.Stdout != "up\n" {
		t.Fatalf("exec in %s: %q", id, res.Stdout)
	}
}

// startBackground starts req in sandbox id, waits for its start event and
// lets go of the stream; the process runs on. It returns the pid.
func startBackground(t *testing.T, ctx context.Context, d driver.Driver, id string, req *process.StartRequest) uint32 {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := ProcessClient(d, id).Start(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatalf("start %s: %v", req.GetProcess().GetCmd(), err)
	}
	defer stream.Close()
	for stream.Receive() {
		if start := stream.Msg().GetEvent().GetStart(); start != nil {
			return start.GetPid()
		}
	}
	t.Fatalf("start %s: no start event: %v", req.GetProcess().GetCmd(), stream.Err())
	return 0
}

// processes returns the agent's running processes, pid by tag.
func processes(t *testing.T, ctx context.Context, d driver.Driver, id string) map[string]uint32 {
	t.Helper()
	resp, err := ProcessClient(d, id).List(ctx, connect.NewRequest(&process.ListRequest{}))
	if err != nil {
		t.Fatalf("list processes in %s: %v", id, err)
	}
	out := map[string]uint32{}
	for _, p := range resp.Msg.GetProcesses() {
		out[p.GetTag()] = p.GetPid()
	}
	return out
}

// sendPTY writes data to the PTY of the process tagged tag.
func sendPTY(t *testing.T, ctx context.Context, d driver.Driver, id, tag, data string) {
	t.Helper()
	_, err := ProcessClient(d, id).SendInput(ctx, connect.NewRequest(&process.SendInputRequest{
		Process: &process.ProcessSelector{Selector: &process.ProcessSelector_Tag{Tag: tag}},
		Input:   &process.ProcessInput{Input: &process.ProcessInput_Pty{Pty: []byte(data)}},
	}))
	if err != nil {
		t.Fatalf("send input to %s in %s: %v", tag, id, err)
	}
}

// counterScript counts up in /tmp/counter every 10 ms; the file always
// holds a whole number (written aside, then renamed).
const counterScript = `i=0; while :; do i=$((i+1)); echo $i > /tmp/counter.new; mv /tmp/counter.new /tmp/counter; sleep 0.01; done`

// startCounter starts counterScript tagged "counter" and waits for its
// first count.
func startCounter(t *testing.T, ctx context.Context, d driver.Driver, id string) uint32 {
	t.Helper()
	tag := "counter"
	pid := startBackground(t, ctx, d, id, &process.StartRequest{
		Process: &process.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", counterScript}},
		Tag:     &tag,
	})
	eventually(t, ctx, "the counter counts", func() bool { return readCounter(t, ctx, d, id) > 0 })
	return pid
}

// readCounter reads /tmp/counter (0 while it does not exist).
func readCounter(t *testing.T, ctx context.Context, d driver.Driver, id string) int {
	t.Helper()
	res := mustShell(t, ctx, d, id, "cat /tmp/counter 2>/dev/null || echo 0")
	n, err := strconv.Atoi(strings.TrimSpace(res.Stdout))
	if err != nil {
		t.Fatalf("counter in %s: %q", id, res.Stdout)
	}
	return n
}

// assertCounterContinues checks that the counter of id did not restart
// (it is at least from) and still counts.
func assertCounterContinues(t *testing.T, ctx context.Context, d driver.Driver, id string, from int) {
	t.Helper()
	now := readCounter(t, ctx, d, id)
	if now < from {
		t.Fatalf("counter in %s went back from %d to %d: the process restarted", id, from, now)
	}
	eventually(t, ctx, fmt.Sprintf("the counter in %s counts on from %d", id, now), func() bool {
		return readCounter(t, ctx, d, id) > now
	})
}

// corruptCopy copies the files of dir into a new directory with every
// byte replaced (same names and sizes).
func corruptCopy(t *testing.T, dir string) string {
	t.Helper()
	out := checkpointDir(t)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		junk := []byte(strings.Repeat("Z", int(info.Size())))
		if err := os.WriteFile(filepath.Join(out, e.Name()), junk, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// assertCheckpointUnchanged fails t when the files in dir changed since
// before (a treeSnapshot of it).
func assertCheckpointUnchanged(t *testing.T, dir string, before map[string]string, after string) {
	t.Helper()
	if diff := cmp.Diff(before, treeSnapshot(t, []string{dir})); diff != "" {
		t.Errorf("checkpoint files changed by %s (-before +after):\n%s", after, diff)
	}
}
