package gvisor

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/denhq/den/internal/errdefs"
)

// fakeHost writes the host settings files under a temporary root.
func fakeHost(t *testing.T, shmem, defrag, maxMaps string) string {
	t.Helper()
	root := t.TempDir()
	for path, v := range map[string]string{
		"/sys/kernel/mm/transparent_hugepage/shmem_enabled": shmem,
		"/sys/kernel/mm/transparent_hugepage/defrag":        defrag,
		"/proc/sys/vm/max_map_count":                        maxMaps,
	} {
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func readSetting(t *testing.T, root, path string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

func TestApplyHostSettings(t *testing.T) {
	debian := func(t *testing.T) string {
		return fakeHost(t, "always within_size advise [never] deny force", "always defer defer+madvise [madvise] never", "65530")
	}
	log := slog.New(slog.DiscardHandler)
	const shmem, defrag, maps = "/sys/kernel/mm/transparent_hugepage/shmem_enabled", "/sys/kernel/mm/transparent_hugepage/defrag", "/proc/sys/vm/max_map_count"

	root := debian(t)
	if err := applyHostSettings(root, "adjust", writeSetting, log); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{shmem: "advise", defrag: "never", maps: "4194304"} {
		if got := readSetting(t, root, path); got != want {
			t.Errorf("adjust: %s = %q, want %q", path, got, want)
		}
	}

	for _, policy := range []string{"check", "ignore"} {
		root := debian(t)
		if err := applyHostSettings(root, policy, writeSetting, log); err != nil {
			t.Fatal(err)
		}
		if got := readSetting(t, root, shmem); got != "always within_size advise [never] deny force" {
			t.Errorf("%s changed shmem_enabled to %q", policy, got)
		}
	}

	// Settings that already suit gVisor, or that an admin chose, stay.
	root = fakeHost(t, "always within_size advise never [deny] force", "always [defer] defer+madvise madvise never", "5000000")
	if err := applyHostSettings(root, "adjust", writeSetting, log); err != nil {
		t.Fatal(err)
	}
	if got := readSetting(t, root, shmem); got != "always within_size advise never [deny] force" {
		t.Errorf("adjust changed an admin's deny to %q", got)
	}
	if got := readSetting(t, root, maps); got != "5000000" {
		t.Errorf("adjust lowered max_map_count to %q", got)
	}

	// A setting that cannot be written: adjust goes on, enforce fails.
	refuse := func(path, value string) error {
		if strings.HasSuffix(path, "/defrag") {
			return os.ErrPermission
		}
		return writeSetting(path, value)
	}
	root = debian(t)
	if err := applyHostSettings(root, "adjust", refuse, log); err != nil {
		t.Errorf("adjust with an unwritable setting: %v", err)
	}
	if got := readSetting(t, root, shmem); got != "advise" {
		t.Errorf("adjust stopped at the unwritable setting: shmem_enabled = %q", got)
	}
	root = debian(t)
	err := applyHostSettings(root, "enforce", refuse, log)
	if errdefs.KindOf(err) != errdefs.FailedPrecondition || !strings.Contains(err.Error(), "defrag") {
		t.Errorf("enforce with an unwritable setting: %v", err)
	}
}

func TestThpMode(t *testing.T) {
	for in, want := range map[string]string{
		"always [madvise] never\n": "madvise", "[always] never": "always", "never": "never", "": "",
	} {
		if got := thpMode(in); got != want {
			t.Errorf("thpMode(%q) = %q, want %q", in, got, want)
		}
	}
}
