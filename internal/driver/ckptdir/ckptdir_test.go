package ckptdir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/denhq/den/internal/errdefs"
)

type testManifest struct {
	Header
	Extra string `json:"extra"`
}

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	files := []string{"a", "b"}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("data of "+f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := Write(dir, "test/1", files, &testManifest{Extra: "x"}); err != nil {
		t.Fatal(err)
	}
	var m testManifest
	if err := Read(dir, "test/1", "test", &m, func() []string { return files }); err != nil {
		t.Fatalf("Read: %v", err)
	}
	if m.Extra != "x" || m.Files["a"] != int64(len("data of a")) || m.Format != "test/1" || m.CreatedAt.IsZero() {
		t.Fatalf("read back %+v", m)
	}

	bad := func(what, want string) {
		t.Helper()
		var m testManifest
		err := Read(dir, "test/1", "test", &m, func() []string { return files })
		if !errdefs.Is(err, errdefs.InvalidArgument) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: Read = %v, want InvalidArgument with %q", what, err, want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "b"), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad("a truncated file", "b is missing or has the wrong size")
	var other testManifest
	if err := Read(dir, "other/1", "other", &other, func() []string { return nil }); !errdefs.Is(err, errdefs.InvalidArgument) || !strings.Contains(err.Error(), "is not a den other checkpoint manifest") {
		t.Errorf("Read of another format = %v", err)
	}
	os.Remove(filepath.Join(dir, ManifestName))
	bad("no manifest", "no complete checkpoint")
}

func TestCheckEmptyDir(t *testing.T) {
	dir := t.TempDir()
	if err := CheckEmptyDir(dir); err != nil {
		t.Fatalf("empty dir: %v", err)
	}
	for name, d := range map[string]string{"relative": "ckpt", "missing": filepath.Join(dir, "missing")} {
		if err := CheckEmptyDir(d); !errdefs.Is(err, errdefs.InvalidArgument) {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	os.WriteFile(filepath.Join(dir, "f"), nil, 0o600)
	if err := CheckEmptyDir(dir); !errdefs.Is(err, errdefs.InvalidArgument) {
		t.Errorf("non-empty dir: %v, want InvalidArgument", err)
	}
}
