package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"

	pb "github.com/denhq/den/api/envd/process"
)

// TestLookPathCache checks a cached PATH lookup answers until a watched
// directory changes: a command added earlier in PATH wins at once, and a
// removed one is looked up again.
func TestLookPathCache(t *testing.T) {
	l := newLookups(newFSGen())
	root := t.TempDir()
	first, second := filepath.Join(root, "first"), filepath.Join(root, "second")
	mkdirT(t, first)
	mkdirT(t, second)
	path := first + ":" + second + ":" + filepath.Join(root, "missing", "bin")
	writeExec(t, filepath.Join(second, "tool"))
	look := func(wantFound string, wantHit bool) {
		t.Helper()
		for range hitAttempts(wantHit) {
			found, hit, err := l.lookPath("tool", path, "/")
			if wantFound == "" {
				if err == nil {
					t.Fatalf("lookPath = %s, want not found", found)
				}
				return
			}
			if err != nil || found != wantFound || (hit != wantHit && !wantHit) {
				t.Fatalf("lookPath = %s, hit %v, %v; want %s, hit %v", found, hit, err, wantFound, wantHit)
			}
			if hit == wantHit {
				return
			}
		}
		t.Fatalf("lookPath of %s never answered from the cache with nothing changed", wantFound)
	}
	look(filepath.Join(second, "tool"), false)
	look(filepath.Join(second, "tool"), true)
	writeExec(t, filepath.Join(first, "tool"))
	look(filepath.Join(first, "tool"), false)
	look(filepath.Join(first, "tool"), true)
	if err := os.Remove(filepath.Join(first, "tool")); err != nil {
		t.Fatal(err)
	}
	look(filepath.Join(second, "tool"), false)
	// A PATH directory that did not exist appears, ahead of the others'
	// answer only by its position: here it is last, so nothing changes
	// but the cache must still notice it.
	missing := filepath.Join(root, "missing", "bin")
	if err := os.MkdirAll(missing, 0o755); err != nil {
		t.Fatal(err)
	}
	look(filepath.Join(second, "tool"), false)
	if err := os.Remove(filepath.Join(second, "tool")); err != nil {
		t.Fatal(err)
	}
	writeExec(t, filepath.Join(missing, "tool"))
	look(filepath.Join(missing, "tool"), false)
	// chmod -x is a change too.
	if err := os.Chmod(filepath.Join(missing, "tool"), 0o644); err != nil {
		t.Fatal(err)
	}
	look("", false)
}

// TestIsDirCache checks a cached directory is looked up again after it,
// or a directory above it, is removed or renamed.
func TestIsDirCache(t *testing.T) {
	l := newLookups(newFSGen())
	root := t.TempDir()
	dir := filepath.Join(root, "a", "b")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	check := func(want, wantHit bool) {
		t.Helper()
		for range hitAttempts(wantHit) {
			yes, hit := l.isDir(dir)
			if yes != want || (hit != wantHit && !wantHit) {
				t.Fatalf("isDir = %v, hit %v; want %v, hit %v", yes, hit, want, wantHit)
			}
			if hit == wantHit {
				return
			}
		}
		t.Fatalf("isDir of %s never answered from the cache with nothing changed", dir)
	}
	check(true, false)
	check(true, true)
	if err := os.Rename(filepath.Join(root, "a"), filepath.Join(root, "c")); err != nil {
		t.Fatal(err)
	}
	check(false, false)
	if err := os.Rename(filepath.Join(root, "c"), filepath.Join(root, "a")); err != nil {
		t.Fatal(err)
	}
	check(true, false)
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	check(false, false)
	mkdirT(t, dir)
	check(true, false)
	check(true, true)
	// A file written inside the directory is not a change of it: one of a
	// few such writes is followed by a hit (each write gets its own try,
	// so a cache that every inner write cleared fails).
	for i := range 20 {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%d", i)), "x")
		if yes, hit := l.isDir(dir); !yes {
			t.Fatalf("isDir of %s = false after a file was written in it", dir)
		} else if hit {
			return
		}
	}
	t.Fatal("isDir missed the cache after each of 20 files written inside the directory")
}

// hitAttempts is how many looks a check makes: a cache hit may need a few,
// since every ancestor of a test's directory is watched and /tmp is busy
// while other tests run (each change anywhere moves the generation, as it
// must); a miss needs one.
func hitAttempts(wantHit bool) int {
	if wantHit {
		return 20
	}
	return 1
}

// TestStartRetriesAStaleLookup checks a start whose cached executable is
// gone (a change inotify did not see) looks again and succeeds.
func TestStartRetriesAStaleLookup(t *testing.T) {
	e := newEnv(t)
	c := e.codecs()[0]
	run := func() {
		t.Helper()
		cfg := &pb.ProcessConfig{Cmd: "sh", Args: []string{"-c", "echo ok"}}
		stream, err := e.proc(c).Start(testCtx(t), connect.NewRequest(&pb.StartRequest{Process: cfg}))
		if err != nil {
			t.Fatal(err)
		}
		if got := collect(t, stream); got.stdout != "ok\n" || got.end.GetExitCode() != 0 {
			t.Fatalf("sh -c 'echo ok' gave %q, end %v", got.stdout, got.end)
		}
	}
	run()
	l := e.agent.lookups
	l.mu.Lock()
	n := 0
	for q, c := range l.paths {
		if q.cmd == "sh" {
			l.paths[q] = cachedPath{found: "/nonexistent/sh", gen: c.gen}
			n++
		}
	}
	l.mu.Unlock()
	if n == 0 {
		t.Fatal("the first start left no cached lookup of sh")
	}
	run()
}

func mkdirT(t *testing.T, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeExec(t *testing.T, p string) {
	t.Helper()
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestNewFSGenClosesNothingElse checks making an fsGen leaves the
// process's other descriptors alone: an early version closed descriptor 0
// (its zero value) each time, and in a process with many agents (the fake
// driver) that was soon someone's database.
func TestNewFSGenClosesNothingElse(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	saved, err := unix.Dup(0)
	if err != nil {
		t.Skipf("no descriptor 0 to test with: %v", err)
	}
	defer func() { unix.Dup2(saved, 0); unix.Close(saved) }()
	if err := unix.Dup2(int(f.Fd()), 0); err != nil {
		t.Fatal(err)
	}
	var before, after unix.Stat_t
	if err := unix.Fstat(0, &before); err != nil {
		t.Fatal(err)
	}
	g := newFSGen()
	defer g.Close()
	if err := unix.Fstat(0, &after); err != nil || after.Dev != before.Dev || after.Ino != before.Ino {
		t.Fatalf("descriptor 0 after newFSGen: %+v, %v; want the file it was", after, err)
	}
}
