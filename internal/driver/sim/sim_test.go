package sim

import (
	"context"
	"testing"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/drivertest"
)

func TestConformanceLifecycle(t *testing.T) {
	drivertest.RunLifecycle(t, func(t *testing.T) (driver.Driver, driver.Spec) {
		return New(), driver.Spec{CPUs: 1, MemoryMB: 256, DiskMB: 256, Image: driver.Image{Ref: "sim"}}
	})
}

func TestSimulatedCommands(t *testing.T) {
	d := New()
	defer d.Close()
	ctx := context.Background()
	if _, err := d.Create(ctx, driver.Spec{ID: "sb"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		argv           []string
		stdout, stderr string
		code           int
	}{
		{[]string{"echo", "hi"}, "hi\n", "", 0},
		{[]string{"/bin/bash", "-lc", "echo a; echo b >&2; exit 3"}, "a\n", "b\n", 3},
		{[]string{"sh", "-c", "false"}, "", "", 1},
		{[]string{"python3", "-c", "print(1)"}, "", "sim: python3: command not simulated\n", 127},
		{[]string{"sh", "-c", "sleep 0.01; echo 'done'"}, "done\n", "", 0},
	} {
		res, err := drivertest.Exec(ctx, d, "sb", tc.argv...)
		if err != nil {
			t.Fatalf("%v: %v", tc.argv, err)
		}
		if res.Stdout != tc.stdout || res.Stderr != tc.stderr || res.ExitCode != tc.code {
			t.Errorf("%v = %+v, want stdout %q stderr %q exit %d", tc.argv, res, tc.stdout, tc.stderr, tc.code)
		}
	}
	if err := d.Recover(ctx, &driver.Handle{ID: "gone", Driver: Name, Version: 1}); err == nil {
		t.Fatal("recovered a sandbox this simulator never had")
	}
}
