package image_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/testenv"
)

// treeState maps each path under root to its state.
func treeState(t *testing.T, root string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		st := stateOf(t, p)
		var raw unix.Stat_t
		unix.Lstat(p, &raw)
		st.MtimeMatch = false
		st.Rdev = raw.Rdev
		if st.Type == unix.S_IFREG {
			st.Body = fmt.Sprintf("%d bytes, mtime %d", len(st.Body), raw.Mtim.Sec)
		}
		out[rel] = st
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// richRootfs is a busybox root filesystem plus the odd things a rootfs holds.
func richRootfs(t *testing.T) string {
	t.Helper()
	dir := testenv.BusyboxRootfs(t)
	os.WriteFile(filepath.Join(dir, "etc/attr"), []byte("x"), 0o600)
	if err := unix.Lsetxattr(filepath.Join(dir, "etc/attr"), "user.test", []byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "etc/passwd"), filepath.Join(dir, "etc/passwd-link")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(dir, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "bin/busybox"), 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestImportDirAndDockerArchive(t *testing.T) {
	s := openStore(t)
	src := richRootfs(t)
	want := treeState(t, src)
	var buf bytes.Buffer
	if err := image.WriteDockerArchive(&buf, src, "example.com/bb:1"); err != nil {
		t.Fatalf("WriteDockerArchive: %v", err)
	}
	viaArchive, err := s.Import(context.Background(), &buf, "", nil)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	viaDir, err := s.ImportDir(context.Background(), src, "bb-dir", image.Config{Env: []string{image.DefaultPath}, User: "user"})
	if err != nil {
		t.Fatalf("ImportDir: %v", err)
	}
	if viaDir.Layers[0] != viaArchive.Layers[0] {
		t.Errorf("ImportDir diff ID %s != archive diff ID %s: the tar of a tree should be deterministic", viaDir.Layers[0], viaArchive.Layers[0])
	}
	for _, ref := range []string{"example.com/bb:1", "bb-dir"} {
		rootfs, err := s.Rootfs(ref)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, treeState(t, rootfs.Layers[0])); diff != "" {
			t.Errorf("%s: unpacked tree differs from the source (-want +got):\n%s", ref, diff)
		}
	}
	rootfs, _ := s.Rootfs("bb-dir")
	if diff := cmp.Diff([]string{image.DefaultPath}, rootfs.Env); diff != "" || rootfs.User != "user" {
		t.Errorf("ImportDir config: %+v", rootfs)
	}
}

func TestBuildBusybox(t *testing.T) {
	s := openStore(t)
	if _, err := os.Stat("/bin/busybox"); err != nil {
		testenv.Missing(t, "busybox not found: apt-get install busybox-static")
	}
	img, err := image.BuildBusybox(context.Background(), s, "busybox")
	if err != nil {
		t.Fatalf("BuildBusybox: %v", err)
	}
	rootfs, err := s.Rootfs(img.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(rootfs.Layers) != 1 || rootfs.Ref != "busybox" {
		t.Fatalf("Rootfs = %+v, want one layer named busybox", rootfs)
	}
	tree := treeState(t, rootfs.Layers[0])
	checks := map[string]func(fileState) bool{
		"bin/sh":    func(f fileState) bool { return f.Type == unix.S_IFLNK && f.Link == "busybox" },
		"tmp":       func(f fileState) bool { return f.Type == unix.S_IFDIR && f.Perm == 0o1777 },
		"home/user": func(f fileState) bool { return f.UID == 1000 && f.GID == 1000 },
		"etc/group": func(f fileState) bool { return f.Type == unix.S_IFREG },
	}
	for p, ok := range checks {
		if !ok(tree[p]) {
			t.Errorf("%s = %+v", p, tree[p])
		}
	}
	passwd, _ := os.ReadFile(filepath.Join(rootfs.Layers[0], "etc/passwd"))
	if !bytes.Contains(passwd, []byte("user:x:1000:1000:user:/home/user:/bin/sh")) {
		t.Errorf("etc/passwd = %q", passwd)
	}
}
