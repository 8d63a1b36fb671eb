package image_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/image"
)

// mkTree creates files (path -> content; a path ending in "/" is a
// directory) under root, all with mtime testTime.
func mkTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, body := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// upperDir is an overlayfs upper directory with one of everything.
func upperDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	mkTree(t, dir, map[string]string{
		"opq/c": "c", "uopq/d": "d", "etc/secret": "s3cret", "etc/attr": "x",
		".den/state": "excluded", "tmp/.den-tmp-on-rootfs/f": "excluded", "tmp/keep": "kept",
	})
	must(t, unix.Mknod(filepath.Join(dir, "gone"), unix.S_IFCHR, 0))
	must(t, unix.Lsetxattr(filepath.Join(dir, "opq"), "trusted.overlay.opaque", []byte("y"), 0))
	must(t, unix.Lsetxattr(filepath.Join(dir, "uopq"), "user.overlay.opaque", []byte("y"), 0))
	must(t, unix.Lsetxattr(filepath.Join(dir, "etc"), "trusted.overlay.impure", []byte("y"), 0))
	must(t, os.Chown(filepath.Join(dir, "etc/secret"), 1000, 1001))
	must(t, os.Chmod(filepath.Join(dir, "etc/secret"), 0o640))
	must(t, os.Link(filepath.Join(dir, "etc/secret"), filepath.Join(dir, "etc/link")))
	must(t, os.Symlink("/etc/secret", filepath.Join(dir, "etc/sym")))
	must(t, unix.Lsetxattr(filepath.Join(dir, "etc/attr"), "user.test", []byte("hello"), 0))
	must(t, unix.Mknod(filepath.Join(dir, "etc/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, os.Chmod(filepath.Join(dir, "etc/null"), 0o666)) // mknod applies the umask
	for _, p := range []string{"etc/secret", "etc/attr", "etc/sym", "etc/null", "opq/c"} {
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dir, p), []unix.Timespec{unix.NsecToTimespec(testTime.UnixNano()), unix.NsecToTimespec(testTime.UnixNano())}, unix.AT_SYMLINK_NOFOLLOW))
	}
	return dir
}

// blobEntries lists the entry names of a stored gzip layer blob and the
// xattrs they carry.
func blobEntries(t *testing.T, storeDir, digest string) (names []string, xattrs []string) {
	t.Helper()
	f, err := os.Open(filepath.Join(storeDir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:")))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names, xattrs
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		for k := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				xattrs = append(xattrs, h.Name+" "+x)
			}
		}
	}
}

func TestCommitLayer(t *testing.T) {
	s, storeDir := openStoreDir(t)
	upper := upperDir(t)
	before := treeState(t, upper)
	l, err := s.CommitLayer(context.Background(), upper, []string{".den", "/tmp/.den-tmp-on-rootfs/"})
	if err != nil {
		t.Fatalf("CommitLayer: %v", err)
	}
	if diff := cmp.Diff(before, treeState(t, upper)); diff != "" {
		t.Errorf("CommitLayer changed its source (-before +after):\n%s", diff)
	}
	if !strings.HasPrefix(l.DiffID, "sha256:") || !strings.HasPrefix(l.Digest, "sha256:") || l.Size <= 0 || l.MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
		t.Errorf("Layer = %+v", l)
	}
	names, xattrs := blobEntries(t, storeDir, l.Digest)
	for _, want := range []string{".wh.gone", "opq/", "opq/.wh..wh..opq", "uopq/.wh..wh..opq", "etc/link", "tmp/keep"} {
		if !slices.Contains(names, want) {
			t.Errorf("layer tar lacks %s: %q", want, names)
		}
	}
	for _, n := range names {
		if strings.HasPrefix(n, ".den") || strings.Contains(n, ".den-tmp-on-rootfs") || n == "gone" {
			t.Errorf("layer tar holds %s", n)
		}
	}
	if diff := cmp.Diff([]string{"etc/attr user.test"}, xattrs); diff != "" {
		t.Errorf("xattrs in the layer tar (-want +got):\n%s", diff)
	}

	dir, err := s.LayerDir(l.DiffID)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want fileState
	}{
		{"gone", fileState{Type: unix.S_IFCHR}},
		{"opq", fileState{Type: unix.S_IFDIR, Perm: 0o755, Xattr: "y"}},
		{"uopq", fileState{Type: unix.S_IFDIR, Perm: 0o755, Xattr: "y"}},
		{"etc/secret", fileState{Type: unix.S_IFREG, Perm: 0o640, UID: 1000, GID: 1001, Body: "s3cret", MtimeMatch: true}},
		{"etc/link", fileState{Type: unix.S_IFREG, Perm: 0o640, UID: 1000, GID: 1001, Body: "s3cret", MtimeMatch: true}},
		{"etc/sym", fileState{Type: unix.S_IFLNK, Link: "/etc/secret", MtimeMatch: true}},
		{"etc/attr", fileState{Type: unix.S_IFREG, Perm: 0o644, Body: "x", Xattr: "hello", MtimeMatch: true}},
		{"etc/null", fileState{Type: unix.S_IFCHR, Perm: 0o666, Rdev: unix.Mkdev(1, 3), MtimeMatch: true}},
		{"tmp/keep", fileState{Type: unix.S_IFREG, Perm: 0o644, Body: "kept"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got := stateOf(t, filepath.Join(dir, tt.path))
			got.MtimeMatch = got.MtimeMatch && tt.want.MtimeMatch
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tt.path, diff)
			}
		})
	}
	for _, p := range []string{".den", "tmp/.den-tmp-on-rootfs"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); !os.IsNotExist(err) {
			t.Errorf("excluded %s is in the layer (%v)", p, err)
		}
	}
	buf := make([]byte, 8)
	if _, err := unix.Lgetxattr(filepath.Join(dir, "uopq"), "user.overlay.opaque", buf); err == nil {
		t.Errorf("uopq kept user.overlay.opaque")
	}
	if _, err := unix.Lgetxattr(filepath.Join(dir, "etc"), "trusted.overlay.impure", buf); err == nil {
		t.Errorf("etc kept trusted.overlay.impure")
	}
	var a, b unix.Stat_t
	if unix.Lstat(filepath.Join(dir, "etc/secret"), &a) != nil || unix.Lstat(filepath.Join(dir, "etc/link"), &b) != nil || a.Ino != b.Ino {
		t.Errorf("etc/link is not a hard link of etc/secret")
	}
	again, err := s.CommitLayer(context.Background(), upper, []string{".den", "tmp/.den-tmp-on-rootfs"})
	if err != nil || again != l {
		t.Errorf("committing the same directory again = %+v, %v; want the same layer %+v", again, err, l)
	}
}

func TestCommitLayerStacks(t *testing.T) {
	s := openStore(t)
	lowerDir := t.TempDir()
	mkTree(t, lowerDir, map[string]string{"gone": "soon gone", "opq/a": "a", "opq/b": "b", "uopq/x": "x", "keep": "kept"})
	lower, err := s.CommitLayer(context.Background(), lowerDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	top, err := s.CommitLayer(context.Background(), upperDir(t), []string{".den", "tmp/.den-tmp-on-rootfs"})
	if err != nil {
		t.Fatal(err)
	}
	empty, err := s.CommitLayer(context.Background(), t.TempDir(), nil)
	if err != nil {
		t.Fatalf("CommitLayer of an empty directory: %v", err)
	}
	history := []image.History{{CreatedBy: "COPY . /"}, {CreatedBy: "RUN make"}, {CreatedBy: "RUN true"}, {CreatedBy: "ENV A=b", EmptyLayer: true}}
	cfg := image.Config{Env: []string{"A=b"}, ExposedPorts: []string{"9090/udp", "8080/tcp"}, Labels: map[string]string{"k": "v"}, Shell: []string{"/bin/bash", "-c"}, StopSignal: "SIGINT"}
	img, err := s.Create(context.Background(), "built:1", []string{lower.DiffID, top.DiffID, empty.DiffID}, cfg, history)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	checkBlobs(t, img)
	wantCfg := cfg
	wantCfg.ExposedPorts = []string{"8080/tcp", "9090/udp"}
	if diff := cmp.Diff(wantCfg, img.Config); diff != "" {
		t.Errorf("Config (-want +got):\n%s", diff)
	}
	if len(img.History) != 4 || img.History[1].CreatedBy != "RUN make" || img.History[0].Created.IsZero() || !img.History[3].EmptyLayer {
		t.Errorf("History = %+v", img.History)
	}
	d, err := s.Inspect("built:1")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"ExposedPorts":{"8080/tcp":{},"9090/udp":{}}`, `"Labels":{"k":"v"}`, `"Shell":["/bin/bash","-c"]`, `"StopSignal":"SIGINT"`, `"created_by":"RUN make"`} {
		if !strings.Contains(string(d.RawConfig), want) {
			t.Errorf("config %s lacks %s", d.RawConfig, want)
		}
	}
	rootfs, err := s.Rootfs("built:1")
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(rootfs.Layers, ":")); err != nil {
		t.Skipf("SKIP merged-view check: cannot mount overlayfs here: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	want := map[string][]string{".": {".den", "etc", "keep", "opq", "tmp", "uopq"}, "opq": {"c"}, "uopq": {"d"}}
	for d, names := range want {
		entries, err := os.ReadDir(filepath.Join(mnt, d))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.Name())
		}
		if d == "." {
			names = slices.DeleteFunc(names, func(n string) bool { return n == ".den" })
		}
		if diff := cmp.Diff(names, got); diff != "" {
			t.Errorf("merged %s (-want +got):\n%s", d, diff)
		}
	}
}

func TestCommitLayerErrors(t *testing.T) {
	s, storeDir := openStoreDir(t)
	redirected := t.TempDir()
	mkTree(t, redirected, map[string]string{"moved/f": "f"})
	must(t, unix.Lsetxattr(filepath.Join(redirected, "moved"), "trusted.overlay.redirect", []byte("/orig"), 0))
	tests := []struct {
		name    string
		dir     string
		exclude []string
		kind    errdefs.Kind
		want    string
	}{
		{"redirect_dir", redirected, nil, errdefs.Unsupported,
			`commit layer DIR: tar DIR: "moved" has overlayfs xattr trusted.overlay.redirect: mount the overlay without redirect_dir and metacopy`},
		{"missing", "/nonexistent", nil, errdefs.InvalidArgument, "commit layer /nonexistent: not a directory"},
		{"exclude everything", redirected, []string{"/"}, errdefs.InvalidArgument, `commit layer DIR: exclude "/" names the whole directory`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.CommitLayer(context.Background(), tt.dir, tt.exclude)
			want := strings.ReplaceAll(tt.want, "DIR", tt.dir)
			if err == nil || err.Error() != want || errdefs.KindOf(err) != tt.kind {
				t.Errorf("CommitLayer error = %v (%v), want %s (%v)", err, errdefs.KindOf(err), want, tt.kind)
			}
		})
	}
	for _, sub := range []string{"layers", "blobs/sha256", "tmp"} {
		if names := dirNames(t, filepath.Join(storeDir, sub)); len(names) != 0 {
			t.Errorf("%s/ = %v after failed commits, want empty", sub, names)
		}
	}
	if _, err := s.LayerDir("sha256:" + strings.Repeat("0", 64)); !errdefs.IsNotFound(err) {
		t.Errorf("LayerDir of a missing layer = %v, want not found", err)
	}
	_, err := s.Create(context.Background(), "x", []string{"sha256:" + strings.Repeat("0", 64)}, image.Config{}, nil)
	if want := "create image x: layer sha256:" + strings.Repeat("0", 64) + " not found"; err == nil || err.Error() != want || !errdefs.IsNotFound(err) {
		t.Errorf("Create on a missing layer = %v, want %s", err, want)
	}
}

func TestCreateUntaggedThenTagged(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	upper := t.TempDir()
	mkTree(t, upper, map[string]string{"f": "f"})
	l, err := s.CommitLayer(ctx, upper, nil)
	if err != nil {
		t.Fatal(err)
	}
	history := []image.History{{CreatedBy: "COPY f /", Created: testTime}}
	untagged, err := s.Create(ctx, "", []string{l.DiffID}, image.Config{}, history)
	if err != nil {
		t.Fatalf("Create untagged: %v", err)
	}
	if untagged.Name != "" {
		t.Errorf("Name = %q, want untagged", untagged.Name)
	}
	if got, err := s.Get(untagged.ID); err != nil || got.ID != untagged.ID {
		t.Errorf("Get(ID) = %v, %v", got, err)
	}
	if _, err := s.Get(""); !errdefs.IsNotFound(err) {
		t.Errorf(`Get("") = %v, want not found`, err)
	}
	if rootfs, err := s.Rootfs(untagged.ID); err != nil || rootfs.Ref != untagged.ID {
		t.Errorf("Rootfs = %+v, %v; want Ref the ID", rootfs, err)
	}
	_, err = s.Push(ctx, untagged.ID, "", image.PushOptions{}, nil)
	if want := "push image " + untagged.ID + ": the image is untagged: give a destination"; err == nil || err.Error() != want || !errdefs.Is(err, errdefs.InvalidArgument) {
		t.Errorf("Push without a destination = %v, want %s", err, want)
	}
	// The same inputs under two tags, as a build with two tags makes them,
	// are one image; the untagged entry gives way to the names.
	for _, name := range []string{"app:1", "app:2"} {
		img, err := s.Create(ctx, name, []string{l.DiffID}, image.Config{}, history)
		if err != nil || img.ID != untagged.ID {
			t.Errorf("Create(%s) = %v, %v; want ID %s", name, img, err, untagged.ID)
		}
	}
	list, _ := s.List()
	var names []string
	for _, img := range list {
		names = append(names, img.Name)
	}
	if diff := cmp.Diff([]string{"app:1", "app:2"}, names); diff != "" {
		t.Errorf("List names (-want +got):\n%s", diff)
	}
	if img, _ := s.Get("app:1"); !img.History[0].Created.Equal(testTime) {
		t.Errorf("History = %+v, want the given time", img.History)
	}
}
