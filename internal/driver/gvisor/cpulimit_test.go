package gvisor

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/warmpool"
)

func TestCPUQuotaUS(t *testing.T) {
	for _, tc := range []struct {
		cpus float64
		want int64
	}{{0, 0}, {-1, 0}, {0.5, 50000}, {1, 100000}, {2.25, 225000}} {
		if got := cpuQuotaUS(driver.Spec{CPUs: tc.cpus}); got != tc.want {
			t.Errorf("cpuQuotaUS(%v) = %d, want %d", tc.cpus, got, tc.want)
		}
	}
}

// cgroupCPUQuota reads the CFS quota and period of cgroup (-1 quota: none).
func cgroupCPUQuota(t *testing.T, cgroup string) (quota, period int64) {
	t.Helper()
	var text string
	if cgroupV2() {
		data := readControl(t, cgroupFile(cgroup, "cpu", "cpu.max"))
		q, p, _ := strings.Cut(data, " ")
		if q == "max" {
			q = "-1"
		}
		text = q + " " + p
	} else {
		text = readControl(t, cgroupFile(cgroup, "cpu", "cpu.cfs_quota_us")) + " " +
			readControl(t, cgroupFile(cgroup, "cpu", "cpu.cfs_period_us"))
	}
	q, p, _ := strings.Cut(text, " ")
	quota, err1 := strconv.ParseInt(q, 10, 64)
	period, err2 := strconv.ParseInt(p, 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("cgroup %s: CPU quota %q", cgroup, text)
	}
	return quota, period
}

// TestCPULimitAppliedAfterStart: runsc starts and restores a sandbox
// without a CPU quota (cpulimit.go), and den applies the spec's once the
// sandbox runs: after Create, Resume and Clone.
func TestCPULimitAppliedAfterStart(t *testing.T) {
	dd, spec := newTestDriver(t)
	d := dd.(*Driver)
	t.Cleanup(func() { _ = d.Close() })
	ctx := context.Background()
	spec.ID, spec.CPUs = "cpu-"+warmpool.RandomHex(4), 0.5
	if _, err := d.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Destroy(context.Background(), spec.ID) })
	check := func(what, id string) {
		t.Helper()
		if q, p := cgroupCPUQuota(t, cgroupPath(d.cfg, id)); q != 50000 || p != cpuPeriodUS {
			t.Errorf("after %s: CPU quota %d per %d us, want 50000 per %d", what, q, p, cpuPeriodUS)
		}
	}
	check("Create", spec.ID)

	dir := newCheckpointDir(t)
	if err := d.Suspend(ctx, spec.ID, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Resume(ctx, spec, dir); err != nil {
		t.Fatal(err)
	}
	check("Resume", spec.ID)

	ckpt := newCheckpointDir(t)
	if err := d.Checkpoint(ctx, spec.ID, ckpt); err != nil {
		t.Fatal(err)
	}
	clone := spec
	clone.ID = "cpu-clone-" + warmpool.RandomHex(4)
	if _, err := d.Clone(ctx, clone, ckpt); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Destroy(context.Background(), clone.ID) })
	check("Clone", clone.ID)
}

// readControl reads a cgroup control file, trimmed.
func readControl(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}
