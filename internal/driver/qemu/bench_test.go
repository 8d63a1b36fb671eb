package qemu

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/drivertest"
)

// BenchmarkBootToExec boots a VM (256 MiB, 1 vCPU, busybox) per
// iteration and runs `true` in it: the time to the first exec's end, and
// the boot's steps as the driver recorded them (see BootTiming), as
// means per iteration. Destroy is not timed.
//
//	DEN_TEST_KERNEL_DIR=/tmp/vmk DEN_GUEST_BIN=$PWD/bin/den-guest \
//	  go test ./internal/driver/qemu -run '^$' -bench BootToExec -benchtime 10x
func BenchmarkBootToExec(b *testing.B) {
	d, spec := newTestDriverB(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	var sum BootTiming
	var toExec time.Duration
	for i := 0; i < b.N; i++ {
		spec.ID = fmt.Sprintf("bench-boot-%d", i)
		begin := time.Now()
		if _, err := d.Create(ctx, spec); err != nil {
			b.Fatal(err)
		}
		if res, err := drivertest.Shell(ctx, d, spec.ID, "true"); err != nil || res.ExitCode != 0 {
			b.Fatalf("first exec: %+v, %v", res, err)
		}
		toExec += time.Since(begin)
		b.StopTimer()
		st, err := readState(d.sandboxDir(spec.ID))
		if err != nil || st.Boot == nil {
			b.Fatalf("boot timing of %s: %+v, %v", spec.ID, st.Boot, err)
		}
		sum.QEMUStart += st.Boot.QEMUStart
		sum.Firmware += st.Boot.Firmware
		sum.Kernel += st.Boot.Kernel
		sum.Init += st.Boot.Init
		sum.Agent += st.Boot.Agent
		if err := d.Destroy(ctx, spec.ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	n := float64(b.N)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / n }
	b.ReportMetric(ms(toExec), "boot-to-exec-ms")
	b.ReportMetric(ms(sum.QEMUStart), "qemu-start-ms")
	b.ReportMetric(ms(sum.Firmware), "firmware-ms")
	b.ReportMetric(ms(sum.Kernel), "kernel-ms")
	b.ReportMetric(ms(sum.Init), "init-ms")
	b.ReportMetric(ms(sum.Agent), "agent-ms")
	b.Logf("accel %s", d.Accel())
}

// BenchmarkClaimToExec creates a VM from a warm pool (one spare, 256 MiB,
// 1 vCPU, busybox) per iteration and runs `true` in it: the time from
// Create to the first exec's end when a booted spare is claimed. The
// refill between iterations is not timed.
//
//	DEN_TEST_KERNEL_DIR=/tmp/vmk DEN_GUEST_BIN=$PWD/bin/den-guest \
//	  go test ./internal/driver/qemu -run '^$' -bench ClaimToExec -benchtime 10x
func BenchmarkClaimToExec(b *testing.B) {
	d, spec := newTestDriverB(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	d.SetPools([]driver.Pool{{Key: "bench", Spec: spec, Size: 1}})
	defer d.SetPools(nil)
	ready := func() bool { st := d.PoolStatus(); return len(st) == 1 && st[0].Ready == 1 }
	var toExec time.Duration
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		for !ready() {
			if ctx.Err() != nil {
				b.Fatalf("the pool did not fill: %+v", d.PoolStatus())
			}
			time.Sleep(10 * time.Millisecond) // polling: the refill boots a VM
		}
		spec.ID = fmt.Sprintf("bench-claim-%d", i)
		b.StartTimer()
		begin := time.Now()
		if _, err := d.Create(ctx, spec); err != nil {
			b.Fatal(err)
		}
		if res, err := drivertest.Shell(ctx, d, spec.ID, "true"); err != nil || res.ExitCode != 0 {
			b.Fatalf("first exec: %+v, %v", res, err)
		}
		toExec += time.Since(begin)
		b.StopTimer()
		if st, err := readState(d.sandboxDir(spec.ID)); err != nil || st.Boot != nil {
			b.Fatalf("sandbox %s was not claimed from the pool (boot %+v, %v)", spec.ID, st.Boot, err)
		}
		if err := d.Destroy(ctx, spec.ID); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(toExec)/float64(time.Millisecond)/float64(b.N), "claim-to-exec-ms")
	b.Logf("accel %s", d.Accel())
}
