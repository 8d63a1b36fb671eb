package vmkernel

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/internal/testenv"
)

// kernelStore is the store the integration tests fetch into:
// $DEN_TEST_KERNEL_DIR (kept between runs), else a temporary directory.
func kernelStore(t *testing.T) *Store {
	t.Helper()
	dir := os.Getenv("DEN_TEST_KERNEL_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// requireTools skips (or fails, under DEN_REQUIRE_INTEGRATION) without
// the host tools a microVM boot needs.
func requireTools(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	for _, tool := range []string{"apt-get", "dpkg-deb", "qemu-system-x86_64", "qemu-img", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "%s not found: scripts/deps.sh installs qemu-system-x86, qemu-utils and e2fsprogs", tool)
		}
	}
}

// TestFetchAndBoot fetches the Debian cloud kernel, builds the initramfs
// around den-guest and boots a microVM under TCG on a busybox root disk:
// den-guest, as init, loads the modules, mounts the disk, switches to it
// and starts the agent, on the guest's own kernel.
func TestFetchAndBoot(t *testing.T) {
	requireTools(t)
	s := kernelStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	k, err := s.Fetch(ctx, "", &progress)
	if err != nil {
		t.Fatalf("fetch: %v\n%s", err, progress.String())
	}
	if !strings.HasSuffix(k.Version, "-cloud-amd64") || len(k.Modules) == 0 || k.Modules[len(k.Modules)-1] != "overlay" {
		t.Fatalf("fetched kernel %+v", k)
	}
	if list, err := s.List(); err != nil || len(list) == 0 || list[len(list)-1].Version != k.Version {
		t.Fatalf("List = %+v, %v", list, err)
	}
	// Dependencies load first: virtio_ring before virtio_mmio.
	if i, j := indexOf(k.Modules, "virtio_ring"), indexOf(k.Modules, "virtio_mmio"); i < 0 || j < 0 || i > j {
		t.Errorf("load order %v: virtio_ring must come before virtio_mmio", k.Modules)
	}
	initrd, err := s.Initramfs(k, testenv.GuestBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	if again, err := s.Initramfs(k, testenv.GuestBinary(t)); err != nil || again != initrd {
		t.Errorf("second Initramfs = %s, %v; want the cached %s", again, err, initrd)
	}

	dir := t.TempDir()
	root := testenv.BusyboxRootfs(t)
	run(t, "mkfs.ext4", "-q", "-F", "-d", root, "-L", "root", filepath.Join(dir, "root.ext4"), "64M")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", filepath.Join(dir, "root.ext4"), "-F", "raw", filepath.Join(dir, "disk.qcow2"))
	console := filepath.Join(dir, "console.log")
	qemu := exec.CommandContext(ctx, "qemu-system-x86_64", "-M", "microvm,acpi=on", "-accel", "tcg", "-cpu", "max",
		"-m", "256", "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", k.Image(), "-initrd", initrd,
		"-append", "console=ttyS0 reboot=t panic=-1 quiet den.root=/dev/vda -- --listen tcp:127.0.0.1:49983",
		"-serial", "file:"+console,
		"-drive", "file="+filepath.Join(dir, "disk.qcow2")+",format=qcow2,if=none,id=d0", "-device", "virtio-blk-device,drive=d0")
	var qemuOut bytes.Buffer
	qemu.Stdout, qemu.Stderr = &qemuOut, &qemuOut
	begin := time.Now()
	if err := qemu.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = qemu.Process.Kill(); _ = qemu.Wait() })
	ready := regexp.MustCompile(`den-vm: ready kernel=(\S+) root=/dev/vda\r?\n(?s:.*)msg=listening`)
	for {
		out, _ := os.ReadFile(console)
		if m := ready.FindSubmatch(out); m != nil {
			if string(m[1]) != k.Version {
				t.Fatalf("the guest runs kernel %s, want %s", m[1], k.Version)
			}
			t.Logf("boot to agent under TCG: %v", time.Since(begin))
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("no agent within the deadline; console:\n%s\nqemu:\n%s", out, qemuOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}
