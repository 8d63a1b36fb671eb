package drivertest

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/denhq/den/api/envd/process"
	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
)

func (s *suite) tests() []testCase {
	return append([]testCase{
		{"Capabilities", s.testCapabilities},
		{"Lifecycle", s.testLifecycle},
		{"CreateIdempotent", s.testCreateIdempotent},
		{"DestroyIdempotent", s.testDestroyIdempotent},
		{"DestroyUnknown", s.testDestroyUnknown},
		{"StatusUnknown", s.testStatusUnknown},
		{"DialGuestUnknown", s.testDialGuestUnknown},
		{"InvalidID", s.testInvalidID},
		{"CreateCancelled", s.testCreateCancelled},
		{"CreateCancelledPartway", s.testCreateCancelledPartway},
		{"ExecEcho", s.testExecEcho},
		{"ExitCode", s.testExitCode},
		{"Stderr", s.testStderr},
		{"Env", s.testEnv},
		{"Hostname", s.testHostname},
		{"WritableRoot", s.testWritableRoot},
		{"ImageConfig", s.testImageConfig},
		{"UpperDir", s.testUpperDir},
		{"UpperDirEmpty", s.testUpperDirEmpty},
		{"UpperDirRecover", s.testUpperDirRecover},
		{"UpperDirInvalid", s.testUpperDirInvalid},
		{"Isolation", s.testIsolation},
		{"Recover", s.testRecover},
		{"RecoverDestroyed", s.testRecoverDestroyed},
		{"RecoverBadVersion", s.testRecoverBadVersion},
		{"InitDied", s.testInitDied},
		{"WaitWhileRunning", s.testWaitWhileRunning},
		{"List", s.testList},
		{"ConcurrentCreate", s.testConcurrentCreate},
		{"MemoryLimit", s.testMemoryLimit},
		{"CPULimit", s.testCPULimit},
		{"DiskQuota", s.testDiskQuota},
		{"ForkBomb", s.testForkBomb},
		{"Stats", s.testStats},
	}, append(append(s.suspendTests(), s.poolTests()...), s.networkTests()...)...)
}

func (s *suite) testCapabilities(t *testing.T) {
	d, _ := s.setup(t)
	c := d.Capabilities()
	if c.Name == "" {
		t.Errorf("Capabilities().Name is empty")
	}
	switch c.Isolation {
	case "user-space-kernel", "vm", "none":
	default:
		t.Errorf("Capabilities().Isolation = %q, want user-space-kernel, vm or none", c.Isolation)
	}
	if _, ok := d.(driver.StatsReader); ok != c.Stats {
		t.Errorf("Capabilities().Stats = %v, but implements StatsReader = %v", c.Stats, ok)
	}
	if _, ok := d.(driver.Waiter); ok != c.Wait {
		t.Errorf("Capabilities().Wait = %v, but implements Waiter = %v", c.Wait, ok)
	}
	if _, ok := d.(driver.Lister); ok != c.List {
		t.Errorf("Capabilities().List = %v, but implements Lister = %v", c.List, ok)
	}
	if _, ok := d.(driver.Suspender); ok != c.Suspend {
		t.Errorf("Capabilities().Suspend = %v, but implements Suspender = %v", c.Suspend, ok)
	}
	if _, ok := d.(driver.Pooler); ok != c.Pool {
		t.Errorf("Capabilities().Pool = %v, but implements Pooler = %v", c.Pool, ok)
	}
}

// testList checks a Lister lists a sandbox from Create to Destroy.
func (s *suite) testList(t *testing.T) {
	d, spec := s.setup(t)
	l, ok := d.(driver.Lister)
	if !ok {
		t.Skip("driver does not implement Lister")
	}
	ctx := testCtx(t)
	listed := func() bool {
		ids, err := l.List(ctx)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		return slices.Contains(ids, spec.ID)
	}
	if listed() {
		t.Fatalf("List has %s before Create", spec.ID)
	}
	s.create(t, ctx, d, spec)
	if !listed() {
		t.Errorf("List lacks %s after Create", spec.ID)
	}
	if err := d.Destroy(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	if listed() {
		t.Errorf("List has %s after Destroy", spec.ID)
	}
}

func (s *suite) testLifecycle(t *testing.T) {
	d, spec := s.setup(t)
	ctx := testCtx(t)
	h, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if h.ID != spec.ID || h.Driver != d.Capabilities().Name {
		t.Errorf("handle = {ID %q, Driver %q}, want {%q, %q}", h.ID, h.Driver, spec.ID, d.Capabilities().Name)
	}
	st, err := d.Status(ctx, spec.ID)
	if err != nil || !st.Running || st.StartedAt.IsZero() {
		t.Errorf("Status after Create = %+v, %v; want running with StartedAt", st, err)
	}
	if err := d.Destroy(ctx, spec.ID); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	_, err = d.Status(ctx, spec.ID)
	assertKind(t, "Status after Destroy", err, errdefs.NotFound)
	_, err = d.DialGuest(ctx, spec.ID)
	assertKind(t, "DialGuest after Destroy", err, errdefs.NotFound)
	s.assertNoLeftovers(t, spec.ID)
}

func (s *suite) testCreateIdempotent(t *testing.T) {
	d, spec := s.setup(t)
	ctx := testCtx(t)
	h1 := s.create(t, ctx, d, spec)
	h2, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatalf("second Create: %v", err)
	}
	if h2.ID != h1.ID || h2.Version != h1.Version || string(h2.State) != string(h1.State) {
		t.Errorf("second Create returned %+v, want the first handle %+v", h2, h1)
	}
	mustShell(t, ctx, d, spec.ID, "true")
}

func (s *suite) testDestroyIdempotent(t *testing.T) {
	d, spec := s.setup(t)
	ctx := testCtx(t)
	if _, err := d.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	for i := range 2 {
		if err := d.Destroy(ctx, spec.ID); err != nil {
			t.Fatalf("Destroy #%d: %v", i+1, err)
		}
	}
	s.assertNoLeftovers(t, spec.ID)
}

func (s *suite) testDestroyUnknown(t *testing.T) {
	d, spec := s.setup(t)
	if err := d.Destroy(testCtx(t), spec.ID); err != nil {
		t.Fatalf("Destroy of unknown id: %v", err)
	}
}

func (s *suite) testStatusUnknown(t *testing.T) {
	d, spec := s.setup(t)
	_, err := d.Status(testCtx(t), spec.ID)
	assertKind(t, "Status of unknown id", err, errdefs.NotFound)
}

func (s *suite) testDialGuestUnknown(t *testing.T) {
	d, spec := s.setup(t)
	_, err := d.DialGuest(testCtx(t), spec.ID)
	assertKind(t, "DialGuest of unknown id", err, errdefs.NotFound)
}

func (s *suite) testInvalidID(t *testing.T) {
	d, spec := s.setup(t)
	for _, id := range []string{"", "../escape", "a/b", ".hidden"} {
		spec.ID = id
		_, err := d.Create(testCtx(t), spec)
		assertKind(t, "Create with id "+id, err, errdefs.InvalidArgument)
	}
}

func (s *suite) testCreateCancelled(t *testing.T) {
	d, spec := s.setup(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	if _, err := d.Create(ctx, spec); err == nil {
		t.Fatalf("Create with a cancelled context succeeded")
	}
	_, err := d.Status(testCtx(t), spec.ID)
	assertKind(t, "Status after cancelled Create", err, errdefs.NotFound)
	s.assertNoLeftovers(t, spec.ID)
}

// testCreateCancelledPartway cancels Create at its 1st, 2nd, ... check of
// the context, so every prefix of its steps is undone once.
func (s *suite) testCreateCancelledPartway(t *testing.T) {
	d, spec := s.setup(t)
	base := spec.ID
	const maxChecks = 60
	for n := 1; n <= maxChecks; n++ {
		spec.ID = base + "-" + itoa(int64(n))
		ctx := newCountdownCtx(testCtx(t), n)
		_, err := d.Create(ctx, spec)
		if err == nil {
			if err := d.Destroy(testCtx(t), spec.ID); err != nil {
				t.Fatalf("Destroy: %v", err)
			}
			t.Logf("Create checks its context %d times", n-1)
			return
		}
		assertKind(t, "Create cancelled partway", err, errdefs.Canceled)
		_, err = d.Status(testCtx(t), spec.ID)
		assertKind(t, "Status after Create cancelled partway", err, errdefs.NotFound)
		s.assertNoLeftovers(t, spec.ID)
	}
	t.Fatalf("Create still cancelled after %d context checks", maxChecks)
}

func (s *suite) testExecEcho(t *testing.T) {
	d, spec := s.setup(t)
	ctx := testCtx(t)
	s.create(t, ctx, d, spec)
	res, err := Exec(ctx, d, spec.ID, "echo", "hello", "den")
	if err != nil {
		t.Fatalf("exec echo: %v", err)
	}
	if res.Stdout != "hello den\n" || res.ExitCode != 0 || !res.Exited {
		t.Errorf("exec echo = %+v, want stdout %q and exit 0", res, "hello den\n")
	}
}

func (s *suite) testExitCode(t *testing.T) {
	d, spec := s.setup(t)
	ctx := testCtx(t)
	s.create(t, ctx, d, spec)
	for _, code := range []int{0, 1, 7, 255} {
		res, err := Shell(ctx, d, spec.ID, "exit "+itoa(int64(code)))
		if err != nil {
			t.Fatalf("exit %d: %v", code, err)
		}
		if res.ExitCode != code || !res.Exited {
			t.Errorf("exit %d: got %+v", code, res)
		}
	}
}

func (s *suite) testStderr(t *testing.T) {
	d, spec := s.setup(t)
	ctx := testCtx(t)
	s.create(t, ctx, d, spec)
	res := mustShell(t, ctx, d, spec.ID, "echo out; echo err >&2")
	if res.Stdout != "out\n" || res.Stderr != "err\n" {
		t.Errorf("stdout %q stderr %q, want %q and %q", res.Stdout, res.Stderr, "out\n", "err\n")
	}
}

func (s *suite) testEnv(t *testing.T) {
	d, spec := s.setup(t)
	ctx := testCtx(t)
	spec.Env["DEN_SUITE_VAR"] = "from spec"
	spec.Image.Env = append(append([]string(nil), spec.Image.Env...), "DEN_IMAGE_VAR=from image")
	s.create(t, ctx, d, spec)
	res := mustShell(t, ctx, d, spec.ID, `echo "$DEN_SUITE_VAR|$DEN_IMAGE_VAR"`)
	if res.Stdout != "from spec|from image\n" {
		t.Errorf("env in sandbox: %q, want %q", res.Stdout, "from spec|from image\n")
	}
	res, err := ExecProcess(ctx, d, spec.ID, &process.ProcessConfig{
		Cmd: "/bin/sh", Args: []string{"-c", "echo $DEN_REQ_VAR"},
		Envs: map[string]string{"DEN_REQ_VAR": "from request"},
	})
	if err != nil || res.Stdout != "from request\n" {
		t.Errorf("request env: %+v, %v; want %q", res, err, "from request\n")
	}
}

func (s *suite) testHostname(t *testing.T) {
	d, spec := s.setup(t)
	requireIsolation(t, d, "a per-sandbox hostname")
	ctx := testCtx(t)
	named := spec
	named.Hostname = "den-box"
	s.create(t, ctx, d, named)
	if got := mustShell(t, ctx, d, named.ID, "hostname").Stdout; got != "den-box\n" {
		t.Errorf("hostname = %q, want %q", got, "den-box\n")
	}
	unnamed := spec
	unnamed.ID += "-default"
	s.create(t, ctx, d, unnamed)
	if got := mustShell(t, ctx, d, unnamed.ID, "hostname").Stdout; got != unnamed.ID+"\n" {
		t.Errorf("default hostname = %q, want the id %q", got, unnamed.ID)
	}
}

func (s *suite) testWritableRoot(t *testing.T) {
	d, spec := s.setup(t)
	requireIsolation(t, d, "a private root filesystem")
	ctx := testCtx(t)
	s.create(t, ctx, d, spec)
	res := mustShell(t, ctx, d, spec.ID, "echo data > /root/f && echo tmp > /tmp/f && cat /root/f /tmp/f")
	if res.Stdout != "data\ntmp\n" {
		t.Errorf("read back %q", res.Stdout)
	}
}

func (s *suite) testIsolation(t *testing.T) {
	d, spec := s.setup(t)
	requireIsolation(t, d, "filesystem isolation between sandboxes")
	ctx := testCtx(t)
	before := treeSnapshot(t, spec.Image.Layers)
	a, b := spec, spec
	b.ID += "-b"
	s.create(t, ctx, d, a)
	s.create(t, ctx, d, b)
	mustShell(t, ctx, d, a.ID, "echo secret > /root/only-a && echo x > /etc/only-a && rm /bin/true && mkdir /tmp/dir-a")
	res := mustShell(t, ctx, d, b.ID, "ls /root/only-a /etc/only-a /tmp/dir-a 2>/dev/null; test -e /bin/true && echo has-true")
	if res.Stdout != "has-true\n" {
		t.Errorf("sandbox b sees a's changes: %q", res.Stdout)
	}
	assertSameTree(t, spec.Image.Layers, before)
}

func (s *suite) testRecover(t *testing.T) {
	d, spec := s.setup(t)
	ctx := testCtx(t)
	h := s.create(t, ctx, d, spec)
	mustShell(t, ctx, d, spec.ID, "echo before > /root/state")
	raw, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	// The old instance is abandoned, not closed: the agent died (kill -9).
	d2, _ := s.newDriver(t) // same t: same configuration, new instance
	defer d2.Close()
	var persisted driver.Handle
	if err := json.Unmarshal(raw, &persisted); err != nil {
		t.Fatal(err)
	}
	if err := d2.Recover(ctx, &persisted); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if res := mustShell(t, ctx, d2, spec.ID, "cat /root/state"); res.Stdout != "before\n" {
		t.Errorf("state after recover: %q", res.Stdout)
	}
	if st, err := d2.Status(ctx, spec.ID); err != nil || !st.Running {
		t.Errorf("Status after Recover = %+v, %v", st, err)
	}
}

func (s *suite) testRecoverDestroyed(t *testing.T) {
	d, spec := s.setup(t)
	ctx := testCtx(t)
	h, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := d.Destroy(ctx, spec.ID); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	d2, _ := s.newDriver(t)
	defer d2.Close()
	assertKind(t, "Recover of a destroyed sandbox", d2.Recover(ctx, h), errdefs.NotFound)
}

func (s *suite) testRecoverBadVersion(t *testing.T) {
	d, spec := s.setup(t)
	ctx := testCtx(t)
	h := s.create(t, ctx, d, spec)
	bad := *h
	bad.Version = h.Version + 1000
	assertKind(t, "Recover of a future handle version", d.Recover(ctx, &bad), errdefs.FailedPrecondition)
}

func (s *suite) testInitDied(t *testing.T) {
	if s.opts.KillInit == nil {
		t.Skip("no KillInit hook for this driver")
	}
	d, spec := s.setup(t)
	ctx := testCtx(t)
	s.create(t, ctx, d, spec)
	waited := make(chan driver.Status, 1)
	if w, ok := d.(driver.Waiter); ok {
		go func() {
			st, err := w.Wait(ctx, spec.ID)
			if err != nil {
				t.Errorf("Wait: %v", err)
			}
			waited <- st
		}()
	}
	s.opts.KillInit(t, d, spec.ID)
	if _, ok := d.(driver.Waiter); ok {
		select {
		case st := <-waited:
			if st.Running || st.Reason == "" {
				t.Errorf("Wait returned %+v after init died, want not running with a reason", st)
			}
		case <-ctx.Done():
			t.Fatalf("Wait did not return after init died")
		}
	}
	var st driver.Status
	eventually(t, ctx, "Status reports not running after init died", func() bool {
		var err error
		st, err = d.Status(ctx, spec.ID)
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		return !st.Running
	})
	if st.Reason == "" {
		t.Errorf("Status of a dead sandbox has no Reason: %+v", st)
	}
	if _, err := Shell(ctx, d, spec.ID, "true"); err == nil {
		t.Errorf("exec in a sandbox whose init died succeeded")
	}
	if err := d.Destroy(ctx, spec.ID); err != nil {
		t.Fatalf("Destroy of a dead sandbox: %v", err)
	}
	s.assertNoLeftovers(t, spec.ID)
}

func (s *suite) testConcurrentCreate(t *testing.T) {
	d, spec := s.setup(t)
	ctx := testCtx(t)
	const n = 5
	var wg sync.WaitGroup
	errs := make([]error, n)
	ids := make([]string, n)
	for i := range n {
		sp := spec
		sp.ID = spec.ID + "-" + itoa(int64(i))
		ids[i] = sp.ID
		t.Cleanup(func() { _ = d.Destroy(context.Background(), sp.ID) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = d.Create(ctx, sp)
		}()
	}
	wg.Wait()
	for i, id := range ids {
		if errs[i] != nil {
			t.Errorf("Create(%s): %v", id, errs[i])
			continue
		}
		if res := mustShell(t, ctx, d, id, "echo $((6*7))"); res.Stdout != "42\n" {
			t.Errorf("%s: %q", id, res.Stdout)
		}
	}
}

func (s *suite) testWaitWhileRunning(t *testing.T) {
	d, spec := s.setup(t)
	w, ok := d.(driver.Waiter)
	if !ok {
		t.Skip("driver does not implement Waiter")
	}
	ctx := testCtx(t)
	s.create(t, ctx, d, spec)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if st, err := w.Wait(short, spec.ID); !errdefs.Is(err, errdefs.Canceled) {
		t.Fatalf("Wait on a running sandbox returned %+v, %v; want a Canceled error when ctx ends", st, err)
	}
	if err := d.Destroy(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Wait(ctx, spec.ID); err == nil {
		t.Errorf("Wait on a destroyed sandbox succeeded, want an error")
	}
}
