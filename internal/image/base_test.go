package image_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/testenv"
)

// TestBuildBase builds the real base image with debootstrap from the host's
// Debian mirror. It takes minutes and downloads ~100 MB, so it only runs
// with DEN_TEST_BASE=1.
func TestBuildBase(t *testing.T) {
	if os.Getenv("DEN_TEST_BASE") != "1" {
		t.Skip("SKIP: set DEN_TEST_BASE=1 to build the base image with debootstrap (minutes, needs a Debian mirror)")
	}
	testenv.RequireRoot(t)
	if _, err := exec.LookPath("debootstrap"); err != nil {
		testenv.Missing(t, "debootstrap not installed: apt-get install debootstrap")
	}
	s := openStore(t)
	phases := map[string]int{}
	start := time.Now()
	img, err := image.BuildBase(context.Background(), s, image.BaseOptions{}, func(p image.Progress) { phases[p.Phase]++ })
	if err != nil {
		t.Fatalf("BuildBase: %v", err)
	}
	t.Logf("base image built in %s: %s, %d MB, progress events %v", time.Since(start).Round(time.Second), img.ID, img.Size>>20, phases)
	for _, p := range []string{"retrieving", "validating", "unpacking", "configuring", "importing"} {
		if phases[p] == 0 {
			t.Errorf("no %q progress events: %v", p, phases)
		}
	}
	rootfs, err := s.Rootfs("base")
	if err != nil {
		t.Fatalf("Rootfs: %v", err)
	}
	layer := rootfs.Layers[0]
	for _, f := range []string{"usr/bin/python3", "usr/bin/python", "usr/bin/node", "usr/bin/git", "usr/bin/curl", "bin/bash", "usr/bin/ps", "home/user"} {
		if _, err := os.Lstat(filepath.Join(layer, f)); err != nil {
			t.Errorf("base image lacks %s: %v", f, err)
		}
	}
	passwd, err := os.ReadFile(filepath.Join(layer, "etc/passwd"))
	if err != nil || !strings.Contains(string(passwd), "user:x:1000:1000::/home/user:/bin/bash") {
		t.Errorf("etc/passwd has no user 1000 with bash: %q, %v", passwd, err)
	}
	debs, _ := filepath.Glob(filepath.Join(layer, "var/cache/apt/archives/*.deb"))
	if len(debs) != 0 {
		t.Errorf("apt cache not cleaned: %d .deb files", len(debs))
	}
	again, err := image.BuildBase(context.Background(), s, image.BaseOptions{}, nil)
	if err != nil || again.ID != img.ID {
		t.Errorf("second BuildBase = %v, %v; want the cached image %s", again, err, img.ID)
	}
}
