package vmkernel

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestInitramfsConcurrent: creates that build the same initramfs at once
// all get it, and no temporary file is left (they shared one name before,
// and one create's rename took the file of another).
func TestInitramfsConcurrent(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	k := Kernel{Version: "test", Dir: filepath.Join(dir, "kernel")}
	if err := os.MkdirAll(k.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Random bytes compress slowly: every build is under way before the
	// first one ends.
	data := make([]byte, 8<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "den-guest")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	paths := make([]string, 6)
	errs := make([]error, len(paths))
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i], errs[i] = s.Initramfs(k, bin)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Initramfs %d: %v", i, err)
		}
		if paths[i] != paths[0] {
			t.Fatalf("Initramfs %d = %s, want %s", i, paths[i], paths[0])
		}
	}
	entries, err := os.ReadDir(k.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != filepath.Base(paths[0]) {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("kernel dir holds %q, want only %s", names, filepath.Base(paths[0]))
	}
}
