package gvisor

import (
	"context"
	"fmt"
	"strconv"

	"github.com/denhq/den/internal/driver"
)

// The CPU limit of a sandbox is applied after it started, not by runsc.
//
// A boot or a restore is the platform's work, not the sandbox's: the Sentry
// loads its state and the pages of its memory with several threads, and
// under a quota of one CPU the kernel throttled a restore of 256 MiB by 5-16
// ms (cpu.stat's throttled_time). So the OCI spec runsc starts and restores
// from carries no CPU quota, and the "apply CPU limit" step of Create,
// Resume and Clone writes it to the sandbox cgroup once the guest agent
// answers. Until then (the boot or restore itself, tens of milliseconds) the
// sandbox may use every CPU of the host, as Cloud Run's startup boost lets
// a starting instance. Recover applies the limit again, for a den that died
// between the two.

// cpuQuotaUS is the CFS quota of spec's CPU limit per cpuPeriodUS; 0 means
// no limit.
func cpuQuotaUS(spec driver.Spec) int64 {
	if spec.CPUs <= 0 {
		return 0
	}
	return int64(spec.CPUs * cpuPeriodUS)
}

// setCPUQuota writes quotaUS per cpuPeriodUS to cgroup's CPU controller
// (cpu.max on cgroup v2, cpu.cfs_period_us and cpu.cfs_quota_us on v1). A
// quota of 0 does nothing. It is idempotent.
func setCPUQuota(cgroup string, quotaUS int64) error {
	if quotaUS <= 0 {
		return nil
	}
	var err error
	if cgroupV2() {
		err = writeSetting(cgroupFile(cgroup, "cpu", "cpu.max"), fmt.Sprintf("%d %d", quotaUS, cpuPeriodUS))
	} else {
		err = writeSetting(cgroupFile(cgroup, "cpu", "cpu.cfs_period_us"), strconv.Itoa(cpuPeriodUS))
		if err == nil {
			err = writeSetting(cgroupFile(cgroup, "cpu", "cpu.cfs_quota_us"), strconv.FormatInt(quotaUS, 10))
		}
	}
	if err != nil {
		return fmt.Errorf("set CPU limit of cgroup %s (is the cpu controller enabled?): %w", cgroup, err)
	}
	return nil
}

// applyCPULimit is the step that applies the sandbox's CPU limit to its
// cgroup once it runs (see above); the state records it for Recover.
func (c *creation) applyCPULimit(ctx context.Context) (func(context.Context) error, error) {
	return nil, setCPUQuota(cgroupPath(c.d.cfg, c.spec.ID), cpuQuotaUS(c.spec))
}
