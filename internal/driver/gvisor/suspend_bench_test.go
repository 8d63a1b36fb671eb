package gvisor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/drivertest"
	"github.com/denhq/den/internal/testenv"
)

// benchDirtyMB is the memory a benchmarked sandbox holds: random data in
// a tmpfs (/dev/shm), which is sentry memory like a process's heap.
const benchDirtyMB = 256

// dirtyKinds are where the benchmarks' sandboxes hold their dirty memory.
var dirtyKinds = []string{DirtyHeap, DirtyTmpfs}

// BenchmarkSuspendResume suspends and resumes one sandbox holding 256 MiB
// of dirty memory, in a process's heap or in a /dev/shm file
// (DirtyMemoryScript): Suspend until it returns (files complete, sandbox
// stopped), Resume until the guest agent answers, and Resume plus a first
// exec (`sh -c 'echo ok'`) as BenchmarkCheckpointFloor times a restore.
// Removing the checkpoint between iterations is not timed. Compare with
// BenchmarkCheckpointFloor (docs/benchmarks.md).
func BenchmarkSuspendResume(b *testing.B) {
	for _, kind := range dirtyKinds {
		b.Run("memory="+kind, func(b *testing.B) { benchSuspendResume(b, kind) })
	}
}

func benchSuspendResume(b *testing.B, kind string) {
	testenv.RequireRoot(b)
	// DEN_BENCH_HOST_SETTINGS=ignore measures the host as it is (with
	// shmem_enabled=never: no huge pages; docs/benchmarks.md).
	d, err := New(Config{RunscPath: testenv.Runsc(b), GuestBinary: testenv.GuestBinary(b), StateDir: b.TempDir(), CgroupParent: testCgroupParent,
		HostSettings: os.Getenv("DEN_BENCH_HOST_SETTINGS"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Close() })
	ctx := context.Background()
	spec := driver.Spec{ID: fmt.Sprintf("bench-suspend-%d", time.Now().UnixNano()), Image: driver.Image{Layers: []string{testenv.BusyboxRootfs(b)}}, CPUs: 1, MemoryMB: 1024, DiskMB: 256}
	if _, err := d.Create(ctx, spec); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Destroy(context.Background(), spec.ID) })
	fill, err := DirtyMemoryScript(kind, benchDirtyMB, "/dev/shm/den-bench-dirty")
	if err != nil {
		b.Fatal(err)
	}
	if res, err := drivertest.Shell(ctx, d, spec.ID, fill); err != nil || res.ExitCode != 0 {
		b.Fatalf("fill memory: %+v, %v", res, err)
	}
	var suspends, resumes, execs []time.Duration
	var imageBytes int64
	for b.Loop() {
		dir := filepath.Join(b.TempDir(), "checkpoint")
		if err := os.Mkdir(dir, 0o700); err != nil {
			b.Fatal(err)
		}
		begin := time.Now()
		if err := d.Suspend(ctx, spec.ID, dir); err != nil {
			b.Fatal(err)
		}
		suspends = append(suspends, time.Since(begin))
		begin = time.Now()
		if _, err := d.Resume(ctx, spec, dir); err != nil {
			b.Fatal(err)
		}
		resumes = append(resumes, time.Since(begin))
		if res, err := drivertest.Shell(ctx, d, spec.ID, "echo ok"); err != nil || res.Stdout != "ok\n" {
			b.Fatalf("exec after resume: %+v, %v", res, err)
		}
		execs = append(execs, time.Since(begin))
		b.StopTimer()
		imageBytes = dirSize(b, dir)
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(p50ms(suspends), "p50-suspend-ms")
	b.ReportMetric(p50ms(resumes), "p50-resume-ms")
	b.ReportMetric(p50ms(execs), "p50-resume+exec-ms")
	b.ReportMetric(float64(imageBytes)/(1<<20), "image-MiB")
	b.Logf("suspend ms: %v", msList(suspends))
	b.Logf("resume ms: %v", msList(resumes))
	b.Logf("resume+exec ms: %v", msList(execs))
}

// BenchmarkCheckpointFloor is raw runsc checkpoint, then restore + first
// exec, of a busybox sandbox holding 256 MiB of dirty memory of each kind
// (MeasureCheckpointFloor), with and without `restore --background`.
func BenchmarkCheckpointFloor(b *testing.B) {
	testenv.RequireRoot(b)
	rootfs := testenv.BusyboxRootfs(b)
	for _, c := range []struct {
		kind       string
		background bool
	}{{DirtyHeap, false}, {DirtyHeap, true}, {DirtyTmpfs, false}, {DirtyTmpfs, true}} {
		kind, background := c.kind, c.background
		b.Run(fmt.Sprintf("memory=%s/background=%v", kind, background), func(b *testing.B) {
			var ckpts, restores []time.Duration
			var image int64
			for b.Loop() {
				ts, err := MeasureCheckpointFloor(context.Background(), testenv.Runsc(b), rootfs, PlatformSystrap, kind, benchDirtyMB, 1, background)
				if err != nil {
					b.Fatal(err)
				}
				ckpts, restores, image = append(ckpts, ts[0].Checkpoint), append(restores, ts[0].Restore), ts[0].ImageBytes
			}
			b.ReportMetric(p50ms(ckpts), "p50-checkpoint-ms")
			b.ReportMetric(p50ms(restores), "p50-restore+exec-ms")
			b.ReportMetric(float64(image)/(1<<20), "image-MiB")
			b.Logf("checkpoint ms: %v", msList(ckpts))
			b.Logf("restore+exec ms: %v", msList(restores))
		})
	}
}

// p50ms is the median of ds in milliseconds.
func p50ms(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[len(s)/2].Microseconds()) / 1000
}

// msList rounds ds to whole milliseconds, for logs.
func msList(ds []time.Duration) []int64 {
	out := make([]int64, len(ds))
	for i, d := range ds {
		out[i] = d.Milliseconds()
	}
	return out
}

// dirSize is the total size of the files in dir.
func dirSize(b *testing.B, dir string) int64 {
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, e := range entries {
		if info, err := e.Info(); err == nil {
			n += info.Size()
		}
	}
	return n
}
