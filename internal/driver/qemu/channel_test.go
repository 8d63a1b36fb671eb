package qemu

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/denhq/den/api/envd/process"
	"github.com/denhq/den/api/envd/process/processconnect"
	"github.com/denhq/den/internal/testenv"
	"github.com/denhq/den/internal/vmkernel"
)

// bootTestVM boots a busybox microVM under TCG whose agent listens on the
// channel, and returns it with its channel.
func bootTestVM(t *testing.T) (vmkernel.Kernel, *channel) {
	t.Helper()
	testenv.RequireRoot(t)
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "mkfs.ext4", "apt-get"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "%s not found: scripts/deps.sh installs qemu-system-x86, qemu-utils and e2fsprogs", tool)
		}
	}
	kdir := os.Getenv("DEN_TEST_KERNEL_DIR")
	if kdir == "" {
		kdir = t.TempDir()
	}
	ks, err := vmkernel.Open(kdir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	k, err := ks.Fetch(ctx, "", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	initrd, err := ks.Initramfs(k, testenv.GuestBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	root := testenv.BusyboxRootfs(t)
	for _, c := range [][]string{
		{"mkfs.ext4", "-q", "-F", "-d", root, "-L", "root", filepath.Join(dir, "root.ext4"), "64M"},
		{"qemu-img", "create", "-q", "-f", "qcow2", "-b", filepath.Join(dir, "root.ext4"), "-F", "raw", filepath.Join(dir, "disk.qcow2")},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", c, err, out)
		}
	}
	v := vm{qemu: "qemu-system-x86_64", accel: "tcg", kernel: k.Image(), initramfs: initrd, disk: filepath.Join(dir, "disk.qcow2"),
		dir: dir, memoryMB: 256, cpus: 1, agentArgs: []string{"--listen", "vport:" + AgentPort}}
	p, err := v.start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Kill() })
	ch := &channel{path: v.agentSocket()}
	t.Cleanup(ch.close)
	deadline := time.Now().Add(2 * time.Minute)
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return ch.dial(ctx) }}}
	for {
		hctx, hcancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(hctx, http.MethodGet, "http://guest/health", nil)
		resp, err := client.Do(req)
		hcancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return k, ch
			}
		}
		if time.Now().After(deadline) {
			console, _ := os.ReadFile(v.consoleLog())
			qlog, _ := os.ReadFile(v.qemuLog())
			t.Fatalf("the agent did not answer over the channel: %v\nconsole:\n%s\nqemu:\n%s", err, console, qlog)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestChannelExec boots a VM and runs `uname -r` through the agent
// channel: the output is the guest kernel's release, not the host's.
func TestChannelExec(t *testing.T) {
	k, ch := bootTestVM(t)
	client := processconnect.NewProcessClient(&http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return ch.dial(ctx) },
	}}, "http://guest")
	for i := range 3 { // several streams over the one port
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		stream, err := client.Start(ctx, connect.NewRequest(&process.StartRequest{Process: &process.ProcessConfig{Cmd: "uname", Args: []string{"-r"}}}))
		if err != nil {
			cancel()
			t.Fatalf("exec %d: %v", i, err)
		}
		var out strings.Builder
		for stream.Receive() {
			if d := stream.Msg().GetEvent().GetData(); d != nil {
				out.Write(d.GetStdout())
			}
		}
		stream.Close()
		cancel()
		if got := strings.TrimSpace(out.String()); got != k.Version {
			t.Fatalf("exec %d: uname -r in the VM = %q, want the guest kernel %q", i, got, k.Version)
		}
	}
}
