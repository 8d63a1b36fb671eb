package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/testenv"
	"github.com/denhq/den/internal/vmkernel"
	den "github.com/denhq/den/sdk/go"
)

// qemuDataDir is a data dir whose kernels/ is the test kernel store
// (DEN_TEST_KERNEL_DIR, fetched when empty), so den's qemu runtime boots
// the guest kernel without fetching it again. It returns the dir and the
// kernel's version.
func qemuDataDir(t *testing.T) (string, string) {
	t.Helper()
	testenv.RequireRoot(t)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		testenv.Missing(t, "qemu-system-x86_64 is not installed (scripts/deps.sh installs it)")
	}
	kdir := os.Getenv("DEN_TEST_KERNEL_DIR")
	if kdir == "" {
		kdir = filepath.Join(t.TempDir(), "kernels")
	}
	ks, err := vmkernel.Open(kdir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	k, err := ks.Get("")
	if err != nil {
		if k, err = ks.Fetch(ctx, "", io.Discard); err != nil {
			testenv.Missing(t, "fetch the guest kernel: %v", err)
		}
	}
	data := t.TempDir()
	if err := os.Symlink(kdir, filepath.Join(data, "kernels")); err != nil {
		t.Fatal(err)
	}
	return data, k.Version
}

// TestQEMURuntime creates a microVM sandbox with `den create --runtime
// qemu` and checks that it runs on the Debian guest kernel, not the
// host's nor gVisor's, and that exec with a PTY, file upload and
// download, and watching a directory work in the VM.
func TestQEMURuntime(t *testing.T) {
	data, kernel := qemuDataDir(t)
	in := startDen(t, data)

	var info rest.Info
	if err := json.Unmarshal([]byte(in.mustDen("info", "--json")), &info); err != nil {
		t.Fatal(err)
	}
	var qemuInfo *rest.RuntimeInfo
	for i, r := range info.RuntimeDetails {
		if r.Name == "qemu" {
			qemuInfo = &info.RuntimeDetails[i]
		}
	}
	if len(info.Runtimes) == 0 || info.Runtimes[0] != "gvisor" || qemuInfo == nil || qemuInfo.Isolation != "vm" || (qemuInfo.Accel != "tcg" && qemuInfo.Accel != "kvm") {
		t.Fatalf("den info: %+v, want gvisor (default) and qemu with its acceleration", info)
	}
	var nodes rest.NodeList
	if err := json.Unmarshal([]byte(in.mustDen("node", "ls", "--json")), &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes.Nodes) != 1 || nodes.Nodes[0].ID != info.Node || len(nodes.Nodes[0].Runtimes) != 2 || nodes.Nodes[0].Runtimes[1].Accel != qemuInfo.Accel {
		t.Errorf("den node ls --json: %+v, want node %s with gvisor and qemu (%s)", nodes, info.Node, qemuInfo.Accel)
	}
	if out := in.mustDen("node", "ls"); !strings.Contains(out, "gvisor, qemu ("+qemuInfo.Accel+")") {
		t.Errorf("den node ls:\n%s\nwant the runtimes with qemu's acceleration", out)
	}

	id := in.create("--runtime", "qemu", "--memory", "256")
	host, _ := exec.Command("uname", "-r").Output()
	gvisorID := in.create()
	inGVisor := in.mustDen("exec", gvisorID, "--", "uname", "-r")
	got := in.mustDen("exec", id, "--", "uname", "-r")
	if got != kernel+"\n" || got == string(host) || got == inGVisor {
		t.Fatalf("uname -r in the VM = %q, want the guest kernel %q (host %q, gVisor %q)", got, kernel, host, inGVisor)
	}
	var sb rest.Sandbox
	if err := json.Unmarshal([]byte(in.mustDen("get", id, "--json")), &sb); err != nil || sb.Runtime != "qemu" {
		t.Fatalf("den get: runtime %q, %v; want qemu", sb.Runtime, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vm := in.client(t).Sandbox(id)

	// A PTY of the asked size.
	var screen syncBuffer
	st, err := vm.Exec(ctx, den.ExecOptions{Cmd: "/bin/sh", Args: []string{"-c", "tty; stty size"}, PTY: &den.PTYSize{Cols: 100, Rows: 30}, Stdout: &screen})
	if err != nil || st.Code != 0 || !strings.Contains(screen.String(), "/dev/pts/") || !strings.Contains(screen.String(), "30 100") {
		t.Fatalf("PTY exec: %+v, %v; screen %q", st, err, screen.String())
	}

	// Watch a directory, then upload a file into it and download it.
	if _, err := vm.Run(ctx, "mkdir -p /root/in"); err != nil {
		t.Fatal(err)
	}
	w, err := vm.Watch(ctx, "/root/in", false)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer w.Close()
	payload := make([]byte, 3<<20)
	rand.Read(payload)
	if err := vm.WriteFile(ctx, "/root/in/blob", bytes.NewReader(payload)); err != nil {
		t.Fatalf("upload: %v", err)
	}
	rc, err := vm.ReadFile(ctx, "/root/in/blob")
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	back, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(back, payload) {
		t.Fatalf("download of a %d-byte upload: %d bytes, %v", len(payload), len(back), err)
	}
	if sum := runOK(t, ctx, vm, "wc -c < /root/in/blob"); strings.TrimSpace(sum) != "3145728" {
		t.Fatalf("size of the upload in the VM: %q", sum)
	}
	for ev, err := range w.Events() {
		if err != nil {
			t.Fatalf("watch events: %v", err)
		}
		if ev.Name == "blob" && (ev.Op == den.OpCreate || ev.Op == den.OpWrite) {
			break
		}
	}

	// Suspend and resume through den: a counter keeps counting, files
	// stay; a fork gives independent copies.
	go vm.Exec(ctx, den.ExecOptions{Cmd: "sh", Args: []string{"-c", counterScript}, Tag: "counter"})
	count := func(id string) int {
		t.Helper()
		var n int
		for range 300 {
			out := in.den(nil, "exec", id, "--", "cat", "/tmp/count")
			if _, err := fmt.Sscan(out.stdout, &n); err == nil && n > 0 {
				return n
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("no counter in sandbox %s", id)
		return 0
	}
	before := count(id)
	in.mustDen("suspend", id)
	if st := in.getSandbox(id).State; st != rest.StateSuspended {
		t.Fatalf("state after suspend: %s", st)
	}
	in.mustDen("resume", id)
	waitFor(t, func() string {
		if count(id) > before {
			return "counting"
		}
		return ""
	}, "counting", time.Minute)
	if sum := runOK(t, ctx, in.client(t).Sandbox(id), "wc -c < /root/in/blob"); strings.TrimSpace(sum) != "3145728" {
		t.Fatalf("the upload after suspend and resume: %q", sum)
	}
	var copies []rest.Sandbox
	if err := json.Unmarshal([]byte(in.mustDen("fork", id, "--count", "2", "--json")), &copies); err != nil || len(copies) != 2 {
		t.Fatalf("fork --count 2: %d copies, %v", len(copies), err)
	}
	for i, c := range copies {
		if c.Runtime != "qemu" {
			t.Errorf("copy %s runs on %q, want qemu", c.ID, c.Runtime)
		}
		in.mustDen("exec", c.ID, "--", "sh", "-c", fmt.Sprintf("echo copy%d > /root/mine", i))
	}
	for i, c := range copies {
		if got := in.mustDen("exec", c.ID, "--", "cat", "/root/mine"); got != fmt.Sprintf("copy%d\n", i) {
			t.Errorf("copy %s reads %q: the copies share a disk", c.ID, got)
		}
		if count(c.ID) < before {
			t.Errorf("copy %s's counter restarted", c.ID)
		}
	}
	if res := in.den(nil, "exec", id, "--", "cat", "/root/mine"); res.code == 0 {
		t.Errorf("the source sees a copy's file: %q", res.stdout)
	}
	in.mustDen("rm", id, gvisorID, copies[0].ID, copies[1].ID)
}
