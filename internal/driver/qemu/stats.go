package qemu

import (
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

// Stats implements driver.StatsReader from the host's view of the VM:
// CPU is the QEMU process's user+system time (under TCG that includes the
// emulation), memory its resident set (guest RAM it touched plus QEMU's
// own), PIDs its threads, disk the blocks the sandbox's disk overlay
// holds. A suspended sandbox uses nothing.
func (d *Driver) Stats(ctx context.Context, id string) (driver.Stats, error) {
	if err := checkID(id); err != nil {
		return driver.Stats{}, err
	}
	dir := d.sandboxDir(id)
	st, err := readState(dir)
	if err != nil {
		return driver.Stats{}, fmt.Errorf("stats of sandbox %s: %w", id, err)
	}
	s := driver.Stats{At: time.Now(), MemoryLimit: uint64(st.MemoryMB) << 20, DiskLimitBytes: uint64(st.DiskMB) << 20}
	if st.Phase == phaseSuspended || !alive(st.PID, st.Dir) {
		return s, nil
	}
	if err := readProcStats(st.PID, &s); err != nil {
		return driver.Stats{}, fmt.Errorf("stats of sandbox %s: %w", id, err)
	}
	var fst unix.Stat_t
	if unix.Stat(filepath.Join(dir, "disk.qcow2"), &fst) == nil {
		s.DiskUsedBytes = uint64(fst.Blocks) * 512
	}
	return s, nil
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times on Linux.
const clockTicks = 100

// readProcStats fills CPU, memory and threads of process pid.
func readProcStats(pid int, s *driver.Stats) error {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return err
	}
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	// Fields after "(comm)": state is field 3; utime 14, stime 15,
	// num_threads 20, rss 24 (pages).
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 22 {
		return fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	field := func(n int) uint64 { v, _ := strconv.ParseUint(f[n-3], 10, 64); return v }
	s.CPUUsageNanos = (field(14) + field(15)) * uint64(time.Second/clockTicks)
	s.PIDs = field(20)
	s.MemoryBytes = field(24) * uint64(os.Getpagesize())
	return nil
}
