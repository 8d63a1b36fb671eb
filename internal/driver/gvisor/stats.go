package gvisor

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/driver"
)

const cgroupRoot = "/sys/fs/cgroup"

// cgroupV2 reports whether /sys/fs/cgroup is the unified hierarchy (else
// runsc uses the v1 controllers mounted below it, as on this host).
func cgroupV2() bool {
	var st unix.Statfs_t
	return unix.Statfs(cgroupRoot, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// cgroupFile is the path of a control file of the sandbox cgroup; ctrl is
// the v1 controller, ignored on v2.
func cgroupFile(cgroup, ctrl, file string) string {
	if cgroupV2() {
		return filepath.Join(cgroupRoot, cgroup, file)
	}
	return filepath.Join(cgroupRoot, ctrl, cgroup, file)
}

// readUint reads a control file holding one number ("max" reads as 0).
func readUint(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// readKey reads "key value" from a flat-keyed control file.
func readKey(path, key string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, key)
}

// removeEmptyCgroup removes cgroup in every hierarchy where it has no
// children left; rmdir fails harmlessly where it still has some.
func removeEmptyCgroup(cgroup string) {
	if cgroupV2() {
		_ = unix.Rmdir(filepath.Join(cgroupRoot, cgroup))
		return
	}
	hierarchies, _ := os.ReadDir(cgroupRoot)
	for _, h := range hierarchies {
		_ = unix.Rmdir(filepath.Join(cgroupRoot, h.Name(), cgroup))
	}
}

// oomKilled reports whether the memcg OOM killer killed a task of cgroup.
func oomKilled(cgroup string) bool {
	file := cgroupFile(cgroup, "memory", "memory.oom_control")
	if cgroupV2() {
		file = cgroupFile(cgroup, "memory", "memory.events")
	}
	n, err := readKey(file, "oom_kill")
	return err == nil && n > 0
}

// Stats implements driver.StatsReader from the sandbox cgroup (sentry and
// gofer together, so memory includes gVisor's own overhead; PIDs counts
// host tasks, not guest processes) and the rootfs overlay filestore. A
// suspended sandbox uses nothing (its checkpoint is the caller's).
func (d *Driver) Stats(ctx context.Context, id string) (driver.Stats, error) {
	if err := checkID(id); err != nil {
		return driver.Stats{}, err
	}
	p := d.paths(id)
	st, err := readState(p)
	if err != nil {
		return driver.Stats{}, fmt.Errorf("stats of sandbox %s: %w", id, err)
	}
	s := driver.Stats{At: time.Now(), MemoryLimit: st.MemoryLimit, DiskLimitBytes: st.DiskLimitBytes}
	if st.Phase == phaseSuspended {
		return s, nil // no processes, no cgroup: nothing in use
	}
	if err := readCgroupStats(st.Cgroup, &s); err != nil {
		return driver.Stats{}, fmt.Errorf("stats of sandbox %s: %w", id, err)
	}
	s.DiskUsedBytes = filestoreUsage(p)
	return s, nil
}

// readCgroupStats fills the cgroup-based fields of s.
func readCgroupStats(cgroup string, s *driver.Stats) error {
	var err error
	if cgroupV2() {
		var usec uint64
		usec, err = readKey(cgroupFile(cgroup, "", "cpu.stat"), "usage_usec")
		s.CPUUsageNanos = usec * 1000
	} else {
		s.CPUUsageNanos, err = readUint(cgroupFile(cgroup, "cpuacct", "cpuacct.usage"))
	}
	if err != nil {
		return fmt.Errorf("read cpu usage: %w", err)
	}
	memFile := "memory.usage_in_bytes"
	if cgroupV2() {
		memFile = "memory.current"
	}
	if s.MemoryBytes, err = readUint(cgroupFile(cgroup, "memory", memFile)); err != nil {
		return fmt.Errorf("read memory usage: %w", err)
	}
	if s.PIDs, err = readUint(cgroupFile(cgroup, "pids", "pids.current")); err != nil {
		return fmt.Errorf("read pids: %w", err)
	}
	return nil
}

// filestoreUsage is the disk space of the rootfs overlay filestore. runsc
// creates it unlinked, so it is found through the sandbox process's open
// files; 0 when that fails.
func filestoreUsage(p paths) uint64 {
	data, err := os.ReadFile(p.pidFile())
	if err != nil {
		return 0
	}
	fdDir := filepath.Join("/proc", strings.TrimSpace(string(data)), "fd")
	entries, err := os.ReadDir(fdDir)
	if err != nil {
		return 0
	}
	prefix := p.filestore() + "/"
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil || !strings.HasPrefix(target, prefix) {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(filepath.Join(fdDir, e.Name()), &st) == nil {
			return uint64(st.Blocks) * 512
		}
	}
	return 0
}
