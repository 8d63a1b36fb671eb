package drivertest

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/denhq/den/internal/driver"
)

// testMemoryLimit allocates far past MemoryMB inside the sandbox. The
// defined behaviour: the allocating process does not succeed, the host and
// the test process are unaffected, and afterwards either the sandbox still
// runs commands or the driver reports it not running (gVisor: the whole
// sandbox is OOM-killed, Reason "oom").
func (s *suite) testMemoryLimit(t *testing.T) {
	d, spec := s.setup(t)
	requireIsolation(t, d, "a memory limit")
	ctx := testCtx(t)
	spec.MemoryMB = 128
	s.create(t, ctx, d, spec)
	// tail keeps its whole input in memory when it has no newline.
	res, err := Shell(ctx, d, spec.ID, "head -c 500m /dev/zero | tail | wc -c")
	if err == nil && res.ExitCode == 0 && strings.TrimSpace(res.Stdout) == "524288000" {
		t.Fatalf("allocating 500 MiB in a %d MiB sandbox succeeded: %+v", spec.MemoryMB, res)
	}
	t.Logf("allocation past the limit: result %+v, err %v", res, err)
	st := s.answersOrStopped(t, ctx, d, spec.ID, "after the allocation")
	if !st.Running && st.Reason == "" {
		t.Errorf("sandbox stopped by the memory limit without a Reason: %+v", st)
	}
	t.Logf("after the allocation: %+v", st)
}

// answersOrStopped waits until sandbox id runs a command again or is
// reported not running, and returns its last Status.
func (s *suite) answersOrStopped(t *testing.T, ctx context.Context, d driver.Driver, id, when string) driver.Status {
	t.Helper()
	var st driver.Status
	var err error
	eventually(t, ctx, "sandbox answers or is reported stopped "+when, func() bool {
		st, err = d.Status(ctx, id)
		if err != nil || !st.Running {
			return true
		}
		res, err := Shell(ctx, d, id, "echo alive")
		return err == nil && res.Stdout == "alive\n"
	})
	if err != nil {
		t.Fatalf("Status %s: %v", when, err)
	}
	return st
}

func (s *suite) testCPULimit(t *testing.T) {
	d, spec := s.setup(t)
	ctx := testCtx(t)
	spec.CPUs = 0.5
	s.create(t, ctx, d, spec)
	mustShell(t, ctx, d, spec.ID, "i=0; while [ $i -lt 1000 ]; do i=$((i+1)); done")
}

// testDiskQuota writes past DiskMB on the root filesystem and in /tmp:
// the write fails with ENOSPC inside the sandbox, which stays usable.
func (s *suite) testDiskQuota(t *testing.T) {
	d, spec := s.setup(t)
	requireIsolation(t, d, "a disk quota")
	ctx := testCtx(t)
	spec.DiskMB = 32
	s.create(t, ctx, d, spec)
	for _, dir := range []string{"/root", "/tmp"} {
		res, err := Shell(ctx, d, spec.ID, "dd if=/dev/zero of="+dir+"/big bs=1M count=64")
		if err != nil {
			t.Fatalf("dd in %s: %v", dir, err)
		}
		if res.ExitCode == 0 || !strings.Contains(res.Stderr, "No space left on device") {
			t.Errorf("writing 64 MiB to %s with a 32 MiB quota: %+v, want ENOSPC", dir, res)
		}
		mustShell(t, ctx, d, spec.ID, "rm "+dir+"/big && echo ok > "+dir+"/small")
	}
}

// testForkBomb runs a fork bomb for a few seconds and kills its process
// group from inside: it is contained (the host and the test survive) and
// afterwards the sandbox answers again or is reported not running.
func (s *suite) testForkBomb(t *testing.T) {
	d, spec := s.setup(t)
	requireIsolation(t, d, "a process limit")
	ctx := testCtx(t)
	s.create(t, ctx, d, spec)
	res, err := Shell(ctx, d, spec.ID, "b() { b | b & }; (b) 2>/dev/null; sleep 5; kill -9 0")
	t.Logf("fork bomb: result %+v, err %v", res, err)
	st := s.answersOrStopped(t, ctx, d, spec.ID, "after the fork bomb")
	t.Logf("after the fork bomb: %+v", st)
}

func (s *suite) testStats(t *testing.T) {
	d, spec := s.setup(t)
	sr, ok := d.(driver.StatsReader)
	if !ok || !d.Capabilities().Stats {
		t.Skipf("driver %s does not report stats", d.Capabilities().Name)
	}
	ctx := testCtx(t)
	spec.MemoryMB, spec.DiskMB = 256, 64
	s.create(t, ctx, d, spec)
	mustShell(t, ctx, d, spec.ID, "dd if=/dev/zero of=/root/f bs=1M count=4 2>/dev/null")
	st, err := sr.Stats(ctx, spec.ID)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.At.IsZero() || st.MemoryBytes == 0 || st.CPUUsageNanos == 0 {
		t.Errorf("Stats = %+v, want At, MemoryBytes and CPUUsageNanos set", st)
	}
	if st.MemoryLimit != 256<<20 || st.DiskLimitBytes != 64<<20 {
		t.Errorf("Stats limits = %d/%d, want %d/%d", st.MemoryLimit, st.DiskLimitBytes, 256<<20, 64<<20)
	}
	t.Logf("stats: %+v", st)
}

// countdownCtx reports itself cancelled from the n-th call of Err or Done
// on: it cancels a Create at a chosen check of its context.
type countdownCtx struct {
	context.Context
	mu   sync.Mutex
	left int
	done chan struct{}
}

func newCountdownCtx(parent context.Context, n int) *countdownCtx {
	return &countdownCtx{Context: parent, left: n, done: make(chan struct{})}
}

// Done counts as a check too, so code that only selects on Done in a
// polling loop is cancelled as well.
func (c *countdownCtx) Done() <-chan struct{} {
	c.tick()
	return c.done
}

func (c *countdownCtx) Err() error {
	if c.tick() {
		return context.Canceled
	}
	return nil
}

// tick counts one check and reports whether the context is cancelled.
func (c *countdownCtx) tick() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.left > 0 {
		c.left--
		if c.left == 0 {
			close(c.done)
		}
	}
	return c.left == 0
}
