package gvisor

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/drivertest"
	"github.com/denhq/den/internal/testenv"
)

// helperEnv makes the test binary act as a short-lived den agent.
const helperEnv = "DEN_GVISOR_KILL9_HELPER"

// TestSurvivesAgentKill9 creates a sandbox in a child process, SIGKILLs
// the child's whole process group (as a crash or Ctrl-C would), and
// recovers the sandbox from a new driver in this process.
func TestSurvivesAgentKill9(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		kill9Helper(t)
		return
	}
	testenv.RequireRoot(t)
	stateDir := t.TempDir()
	line, err := runKilledHelper(t, "TestSurvivesAgentKill9", helperEnv, stateDir)
	var h driver.Handle
	if err == nil {
		err = json.Unmarshal([]byte(line), &h)
	}
	if err != nil {
		t.Fatalf("read handle from helper: %v (%q)", err, line)
	}

	d, err := New(Config{RunscPath: testenv.Runsc(t), GuestBinary: testenv.GuestBinary(t), StateDir: stateDir, CgroupParent: testCgroupParent, Platform: PlatformSystrap})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t.Cleanup(func() {
		_ = d.Destroy(ctx, h.ID)
		_ = d.Close()
	})
	if err := d.Recover(ctx, &h); err != nil {
		t.Fatalf("Recover after kill -9 of the agent: %v", err)
	}
	res, err := drivertest.Exec(ctx, d, h.ID, "cat", "/root/mark")
	if err != nil || res.Stdout != "made by the helper\n" {
		t.Fatalf("exec after recover: %+v, %v", res, err)
	}
}

// kill9Helper creates a sandbox, prints its handle and waits to be killed.
func kill9Helper(t *testing.T) {
	d, err := New(Config{RunscPath: os.Getenv("DEN_RUNSC"), GuestBinary: os.Getenv("DEN_GUEST_BIN"), StateDir: os.Getenv("DEN_STATE_DIR"), CgroupParent: testCgroupParent, Platform: PlatformSystrap})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h, err := d.Create(ctx, driver.Spec{ID: fmt.Sprintf("kill9-%d", os.Getpid()), Image: driver.Image{Layers: []string{os.Getenv("DEN_ROOTFS")}}, MemoryMB: 256, DiskMB: 64})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := drivertest.Shell(ctx, d, h.ID, "echo made by the helper > /root/mark"); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(h)
	fmt.Printf("%s\n", data)
	select {} // until SIGKILL
}

// TestPtracePlatform checks the fallback platform runs a sandbox, with the
// default (nested, per state dir) cgroup parent.
func TestPtracePlatform(t *testing.T) {
	testenv.RequireRoot(t)
	d, err := New(Config{RunscPath: testenv.Runsc(t), GuestBinary: testenv.GuestBinary(t), StateDir: t.TempDir(), Platform: PlatformPtrace})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	ctx := context.Background()
	id := fmt.Sprintf("ptrace-%d", os.Getpid())
	if _, err := d.Create(ctx, driver.Spec{ID: id, Image: driver.Image{Layers: []string{testenv.BusyboxRootfs(t)}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Destroy(ctx, id) })
	if res, err := drivertest.Exec(ctx, d, id, "echo", "ok"); err != nil || res.Stdout != "ok\n" {
		t.Fatalf("exec: %+v, %v", res, err)
	}
	if st, err := d.Stats(ctx, id); err != nil || st.MemoryBytes == 0 {
		t.Fatalf("Stats: %+v, %v", st, err)
	}
}

// runKilledHelper re-runs this test binary as a short-lived driver process
// (test name, with helperVar set and the driver's inputs in the env), reads
// the first line it prints, then SIGKILLs its whole process group, as a
// crash or Ctrl-C would, and returns the line.
func runKilledHelper(t *testing.T, name, helperVar, stateDir string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperVar+"=1", "DEN_STATE_DIR="+stateDir,
		"DEN_RUNSC="+testenv.Runsc(t), "DEN_GUEST_BIN="+testenv.GuestBinary(t), "DEN_ROOTFS="+testenv.BusyboxRootfs(t))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
	return line, err
}
