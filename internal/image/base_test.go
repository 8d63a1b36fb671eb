package image_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/testenv"
)

// TestBuildBase builds the real base image with debootstrap from the host's
// Debian mirror. It takes minutes and downloads ~100 MB, so it only runs
// with DEN_TEST_IMAGE_BASE=1 (the e2e TestBaseImage, which make test runs, builds it through den up).
func TestBuildBase(t *testing.T) {
	if os.Getenv("DEN_TEST_IMAGE_BASE") != "1" {
		t.Skip("SKIP: set DEN_TEST_IMAGE_BASE=1 to build the base image with debootstrap (minutes, needs a Debian mirror; make test covers it through test/e2e TestBaseImage)")
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

// fakeDebootstrap writes a script standing in for debootstrap.
func fakeDebootstrap(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "debootstrap")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBuildBaseFailures(t *testing.T) {
	tests := []struct {
		name   string
		script string
		want   string
	}{
		{"retries without missing optional packages", `
case "$1 $2" in *python-is-python3*) echo "E: Couldn't find these debs: python-is-python3"; exit 1;; esac
echo "I: Retrieving bash 5.2"; echo "E: out of disk"; exit 1`,
			"build base image: debootstrap: exit status 1: I: Retrieving bash 5.2 | E: out of disk"},
		{"fails on missing required packages", `echo "E: Couldn't find these debs: nodejs python-is-python3"; exit 1`,
			"build base image: packages not on the mirror: nodejs python-is-python3: exit status 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, dir := openStoreDir(t)
			opts := image.BaseOptions{Mirror: "http://mirror.invalid/debian", Debootstrap: fakeDebootstrap(t, tt.script)}
			_, err := image.BuildBase(context.Background(), s, opts, nil)
			if err == nil || err.Error() != tt.want {
				t.Errorf("BuildBase error = %v, want %s", err, tt.want)
			}
			if names := dirNames(t, filepath.Join(dir, "tmp")); len(names) != 0 {
				t.Errorf("tmp/ = %v after a failed build, want empty", names)
			}
		})
	}
}

func TestBuildBaseCancel(t *testing.T) {
	s, dir := openStoreDir(t)
	// The fake reports progress, then blocks until it is killed.
	opts := image.BaseOptions{Mirror: "http://mirror.invalid/debian", Debootstrap: fakeDebootstrap(t, `mkdir -p "$4"; echo "I: Retrieving bash 5.2"; exec sleep 600`)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := image.BuildBase(ctx, s, opts, func(p image.Progress) {
		if p.Phase == "retrieving" {
			cancel()
		}
	})
	if !errdefs.Is(err, errdefs.Canceled) {
		t.Errorf("BuildBase after cancel = %v, want canceled", err)
	}
	if names := dirNames(t, filepath.Join(dir, "tmp")); len(names) != 0 {
		t.Errorf("tmp/ = %v after a canceled build, want empty", names)
	}
}
