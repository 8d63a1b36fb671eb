package qemu

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/drivertest"
)

// TestConformance runs the driver conformance suite on QEMU microVMs
// (under TCG on a host without hardware KVM: about 7 minutes here).
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("the conformance suite boots a VM per case: minutes under TCG")
	}
	drivertest.RunOptions(t, func(t *testing.T) (driver.Driver, driver.Spec) {
		d, spec := newTestDriver(t)
		return d, spec
	}, drivertest.Options{Leftovers: leftovers, KillInit: killInit})
}

// leftovers lists the host state of sandbox id that still exists: its
// directory and a QEMU running for it.
func leftovers(t *testing.T, id string) []string {
	dir := filepath.Join(drivertest.TempDir(t), "state", "sandboxes", id)
	var left []string
	if _, err := os.Stat(dir); err == nil {
		left = append(left, dir)
	}
	// A QEMU runs in its VM's directory; a claimed spare's command line
	// names the spare's.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmdline, _ := os.ReadFile(p)
		cwd, _ := os.Readlink(filepath.Join(filepath.Dir(p), "cwd"))
		if strings.Contains(string(cmdline), dir+"/") || cwd == dir {
			left = append(left, "qemu process "+filepath.Base(filepath.Dir(p)))
		}
	}
	return left
}

// killInit makes the guest agent, the VM's init, die as a crash would: it
// sends it SIGABRT (the Go runtime's handler dumps its goroutines and
// exits), and the guest kernel panics with "Attempted to kill init!".
func killInit(t *testing.T, d driver.Driver, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = drivertest.Shell(ctx, d, id, "kill -ABRT 1") // its stream dies with the agent
}
