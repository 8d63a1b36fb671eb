package gvisor

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/drivertest"
	"github.com/denhq/den/internal/testenv"
)

// BenchmarkCreateExec is den's create + first exec through the guest
// agent; compare with BenchmarkRawFloor (docs/benchmarks.md). pool=off
// creates cold; pool=on claims a warm spare each time (the wait for the
// refill between iterations is not timed).
func BenchmarkCreateExec(b *testing.B) {
	for _, warm := range []int{0, 1} {
		name := map[int]string{0: "pool=off", 1: "pool=on"}[warm]
		b.Run(name, func(b *testing.B) { benchCreateExec(b, warm) })
	}
}

func benchCreateExec(b *testing.B, warm int) {
	testenv.RequireRoot(b)
	d, err := New(Config{RunscPath: testenv.Runsc(b), GuestBinary: testenv.GuestBinary(b), StateDir: b.TempDir(), CgroupParent: testCgroupParent, WarmPool: warm, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Close() })
	spec := driver.Spec{Image: driver.Image{Layers: []string{testenv.BusyboxRootfs(b)}}, CPUs: 1, MemoryMB: 512, DiskMB: 256}
	ctx := context.Background()
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		if warm > 0 {
			b.StopTimer()
			warmUp(b, d, spec, warm)
			b.StartTimer()
		}
		spec.ID = fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i)
		begin := time.Now()
		if _, err := d.Create(ctx, spec); err != nil {
			b.Fatal(err)
		}
		res, err := drivertest.Exec(ctx, d, spec.ID, "sh", "-c", "echo ok")
		if err != nil || res.Stdout != "ok\n" {
			b.Fatalf("exec: %+v, %v", res, err)
		}
		total += time.Since(begin)
		b.StopTimer()
		if err := d.Destroy(ctx, spec.ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/create+exec")
	b.ReportMetric(float64(d.claims.Load())/float64(b.N), "claims/op")
}

// BenchmarkRawFloor is raw runsc create+start+exec (MeasureRawFloor).
func BenchmarkRawFloor(b *testing.B) {
	testenv.RequireRoot(b)
	rootfs := testenv.BusyboxRootfs(b)
	var total time.Duration
	n := 0
	for b.Loop() {
		ds, err := MeasureRawFloor(context.Background(), testenv.Runsc(b), rootfs, PlatformSystrap, 1)
		if err != nil {
			b.Fatal(err)
		}
		total += ds[0]
		n++
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(n), "ms/create+exec")
}
