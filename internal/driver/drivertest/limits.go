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
	spec.MemoryMB = 192
	s.create(t, ctx, d, spec)
	// busybox tail keeps its whole input in memory when it has no newline.
	res, err := Shell(ctx, d, spec.ID, "head -c 600m /dev/zero | tail -c 1 | wc -c")
	if err == nil && res.ExitCode == 0 && strings.TrimSpace(res.Stdout) == "1" {
		t.Fatalf("allocating 600 MiB in a %d MiB sandbox succeeded: %+v", spec.MemoryMB, res)
	}
	t.Logf("allocation past the limit: result %+v, err %v", res, err)
	st, err := d.Status(ctx, spec.ID)
	if err != nil {
		t.Fatalf("Status after OOM: %v", err)
	}
	if !st.Running {
		t.Logf("sandbox was stopped by the memory limit: %+v", st)
		return
	}
	mustShell(t, ctx, d, spec.ID, "true")
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
	var st driver.Status
	eventually(t, ctx, "sandbox answers or is reported stopped after the fork bomb", func() bool {
		st, err = d.Status(ctx, spec.ID)
		if err != nil || !st.Running {
			return true
		}
		res, err := Shell(ctx, d, spec.ID, "echo alive")
		return err == nil && res.Stdout == "alive\n"
	})
	if err != nil {
		t.Fatalf("Status after fork bomb: %v", err)
	}
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

// countdownCtx reports itself cancelled from the n-th call of Err on: it
// cancels a Create at a chosen check of its context, deterministically.
type countdownCtx struct {
	context.Context
	mu   sync.Mutex
	left int
	done chan struct{}
}

func newCountdownCtx(parent context.Context, n int) *countdownCtx {
	return &countdownCtx{Context: parent, left: n, done: make(chan struct{})}
}

func (c *countdownCtx) Done() <-chan struct{} { return c.done }

func (c *countdownCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.left > 0 {
		c.left--
		if c.left == 0 {
			close(c.done)
		}
	}
	if c.left == 0 {
		return context.Canceled
	}
	return nil
}
