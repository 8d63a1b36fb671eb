package vmkernel

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
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
// the host tools a fetch needs.
func requireTools(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "%s not found: the guest kernel comes from Debian's apt", tool)
		}
	}
}

// TestFetch fetches the Debian cloud kernel and builds the initramfs
// around den-guest: the kernel, the guest's modules after their
// dependencies, and an archive whose /init is the agent binary. (The
// qemu driver's tests boot it.)
func TestFetch(t *testing.T) {
	requireTools(t)
	s := kernelStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	k, err := s.Fetch(ctx, "", &progress)
	if err != nil {
		t.Fatalf("fetch: %v\n%s", err, progress.String())
	}
	if !strings.HasSuffix(k.Version, "-cloud-amd64") || len(k.Modules) == 0 || k.Modules[len(k.Modules)-1] != "overlay" {
		t.Fatalf("fetched kernel %+v", k)
	}
	if fi, err := os.Stat(k.Image()); err != nil || fi.Size() < 1<<20 {
		t.Fatalf("kernel image: %v, %v", fi, err)
	}
	if list, err := s.List(); err != nil || len(list) == 0 || list[len(list)-1].Version != k.Version {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if again, err := s.Fetch(ctx, "", io.Discard); err != nil || again.Version != k.Version {
		t.Fatalf("second Fetch = %+v, %v", again, err)
	}
	// Dependencies load first: virtio_ring before virtio_mmio.
	if i, j := indexOf(k.Modules, "virtio_ring"), indexOf(k.Modules, "virtio_mmio"); i < 0 || j < 0 || i > j {
		t.Errorf("load order %v: virtio_ring must come before virtio_mmio", k.Modules)
	}
	guestBin := testenv.GuestBinary(t)
	initrd, err := s.Initramfs(k, guestBin)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := s.Initramfs(k, guestBin); err != nil || again != initrd {
		t.Errorf("second Initramfs = %s, %v; want the cached %s", again, err, initrd)
	}
	gz, err := os.ReadFile(initrd)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	bin, _ := os.ReadFile(guestBin)
	entries := map[string]cpioEntry{}
	for _, e := range readCPIO(t, raw) {
		entries[e.Name] = e
	}
	if e := entries["init"]; e.Data != string(bin) || e.Mode != cpioFile|0o755 {
		t.Errorf("/init is not the guest binary (mode %o, %d bytes)", e.Mode, len(e.Data))
	}
	if e := entries["dev/console"]; e.Mode != cpioChr|0o600 || e.Major != 5 || e.Minor != 1 {
		t.Errorf("/dev/console = %+v", e)
	}
	var cfg VMConfig
	if err := json.Unmarshal([]byte(entries["etc/den-vm.json"].Data), &cfg); err != nil || strings.Join(cfg.Modules, " ") != strings.Join(k.Modules, " ") {
		t.Errorf("den-vm.json = %+v, %v; want modules %v", cfg, err, k.Modules)
	}
	for _, m := range k.Modules {
		if e, ok := entries["lib/modules/"+m+".ko"]; !ok || !strings.HasPrefix(e.Data, "\x7fELF") {
			t.Errorf("module %s missing or not ELF", m)
		}
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
