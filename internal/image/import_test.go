package image_test

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/image"
)

func TestImportDockerArchive(t *testing.T) {
	s := openStore(t)
	src, err := random.Image(1024, 3)
	if err != nil {
		t.Fatal(err)
	}
	var phases []string
	img, err := s.Import(context.Background(), bytes.NewReader(dockerArchive(t, src, "example.com/rand:v1")), "", func(p image.Progress) {
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
	})
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	want := &image.Image{Name: "example.com/rand:v1", ID: configName(t, src), Layers: diffIDs(t, src)}
	if diff := cmp.Diff(want, img, cmpopts.IgnoreFields(image.Image{}, "Size", "CreatedAt", "Digest", "Blobs", "History")); diff != "" {
		t.Errorf("Import (-want +got):\n%s", diff)
	}
	checkBlobs(t, img)
	if img.Size < 3*1024 || img.CreatedAt.IsZero() {
		t.Errorf("Size = %d, CreatedAt = %v; want at least 3 KiB and a time", img.Size, img.CreatedAt)
	}
	if diff := cmp.Diff([]string{"reading", "unpacking"}, phases); diff != "" {
		t.Errorf("progress phases (-want +got):\n%s", diff)
	}
	for _, ref := range []string{"example.com/rand:v1", img.ID, img.ID[:12], img.ID[7:15]} {
		got, err := s.Get(ref)
		if err != nil {
			t.Errorf("Get(%q): %v", ref, err)
			continue
		}
		if diff := cmp.Diff(img, got); diff != "" {
			t.Errorf("Get(%q) (-want +got):\n%s", ref, diff)
		}
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].ID != img.ID {
		t.Errorf("List = %v, %v; want the one image", list, err)
	}
	rootfs, err := s.Rootfs("example.com/rand:v1")
	if err != nil {
		t.Fatalf("Rootfs: %v", err)
	}
	if len(rootfs.Layers) != 3 {
		t.Fatalf("Rootfs layers = %v, want 3", rootfs.Layers)
	}
	for i, l := range rootfs.Layers {
		// Topmost first: the last diff ID names the first directory.
		if filepath.Base(l) != img.Layers[2-i][len("sha256:"):] || !filepath.IsAbs(l) {
			t.Errorf("Rootfs layer %d = %s, want the directory of %s", i, l, img.Layers[2-i])
		}
	}
}

func TestImportOCILayout(t *testing.T) {
	src := imageOf(t, layerOf(t, reg("hello", "world")))
	tests := []struct {
		name        string
		annotations map[string]string
		importAs    string
		wantName    string
	}{
		{"containerd name", map[string]string{"io.containerd.image.name": "docker.io/library/oci:1", "org.opencontainers.image.ref.name": "1"}, "", "docker.io/library/oci:1"},
		{"ref name", map[string]string{"org.opencontainers.image.ref.name": "oci-ref"}, "", "oci-ref"},
		{"given name", nil, "mine", "mine"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			img, err := s.Import(context.Background(), bytes.NewReader(ociArchive(t, src, tt.annotations)), tt.importAs, nil)
			if err != nil {
				t.Fatalf("Import: %v", err)
			}
			want := &image.Image{Name: tt.wantName, ID: configName(t, src), Layers: diffIDs(t, src),
				Config: image.Config{Env: []string{"PATH=/bin", "A=b"}, WorkingDir: "/work", User: "1000", Cmd: []string{"sh"}}}
			if diff := cmp.Diff(want, img, cmpopts.IgnoreFields(image.Image{}, "Size", "CreatedAt", "Blobs", "History", "Digest")); diff != "" {
				t.Errorf("Import (-want +got):\n%s", diff)
			}
			// An OCI layout's own manifest is kept.
			if d, _ := src.Digest(); img.Digest != d.String() {
				t.Errorf("Digest = %s, want the layout's manifest digest %s", img.Digest, d)
			}
			checkBlobs(t, img)
			rootfs, err := s.Rootfs(tt.wantName)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := os.ReadFile(filepath.Join(rootfs.Layers[0], "hello")); string(got) != "world" {
				t.Errorf("hello = %q, %v; want world", got, err)
			}
			if diff := cmp.Diff([]string{"PATH=/bin", "A=b"}, rootfs.Env); diff != "" || rootfs.WorkingDir != "/work" || rootfs.User != "1000" {
				t.Errorf("Rootfs config = %+v", rootfs)
			}
		})
	}
}

// fileState is what the content test checks of one path.
type fileState struct {
	Type       uint32 // S_IFMT bits
	Perm       uint32
	UID, GID   uint32
	Link       string
	Body       string
	Rdev       uint64
	Xattr      string // value of user.test, or trusted.overlay.opaque on dirs
	MtimeMatch bool
}

func stateOf(t *testing.T, p string) fileState {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	fs := fileState{Type: st.Mode & unix.S_IFMT, Perm: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid, Rdev: st.Rdev,
		MtimeMatch: st.Mtim.Sec == testTime.Unix()}
	switch fs.Type {
	case unix.S_IFLNK:
		fs.Link, _ = os.Readlink(p)
		fs.Perm = 0
	case unix.S_IFREG:
		b, _ := os.ReadFile(p)
		fs.Body = string(b)
	}
	buf := make([]byte, 64)
	for _, x := range []string{"user.test", "trusted.overlay.opaque"} {
		if n, err := unix.Lgetxattr(p, x, buf); err == nil {
			fs.Xattr = string(buf[:n])
		}
	}
	return fs
}

func TestImportLayerContent(t *testing.T) {
	s := openStore(t)
	lower := layerOf(t,
		dir("etc/"),
		with(reg("etc/secret", "s3cret"), func(h *tar.Header) { h.Mode, h.Uid, h.Gid = 0o640, 1000, 1001 }),
		with(reg("bin/su", "su"), func(h *tar.Header) { h.Mode = 0o4755 }),
		with(reg("etc/attr", "x"), func(h *tar.Header) { h.PAXRecords = map[string]string{"SCHILY.xattr.user.test": "hello"} }),
		hardlink("etc/secret-link", "etc/secret"),
		symlink("etc/abs", "/etc/passwd"),
		with(entry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: testTime}}, func(*tar.Header) {}),
		entry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o600, ModTime: testTime}},
		with(dir("opq/"), func(h *tar.Header) { h.Mode, h.Uid = 0o700, 1000 }),
		reg("opq/a", "a"), reg("opq/b", "b"),
		reg("gone", "soon gone"),
	)
	upper := layerOf(t, reg(".wh.gone", ""), reg("opq/.wh..wh..opq", ""), reg("opq/c", "c"))
	img, err := s.Import(context.Background(), bytes.NewReader(dockerArchive(t, imageOf(t, lower, upper), "content:1")), "", nil)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	rootfs, err := s.Rootfs(img.Name)
	if err != nil {
		t.Fatal(err)
	}
	top, bottom := rootfs.Layers[0], rootfs.Layers[1]
	tests := []struct {
		path string
		want fileState
	}{
		{"etc/secret", fileState{Type: unix.S_IFREG, Perm: 0o640, UID: 1000, GID: 1001, Body: "s3cret", MtimeMatch: true}},
		{"bin/su", fileState{Type: unix.S_IFREG, Perm: 0o4755, Body: "su", MtimeMatch: true}},
		{"etc/attr", fileState{Type: unix.S_IFREG, Perm: 0o644, Body: "x", Xattr: "hello", MtimeMatch: true}},
		{"etc/abs", fileState{Type: unix.S_IFLNK, Link: "/etc/passwd", MtimeMatch: true}},
		{"dev/null", fileState{Type: unix.S_IFCHR, Perm: 0o666, Rdev: unix.Mkdev(1, 3), MtimeMatch: true}},
		{"run/fifo", fileState{Type: unix.S_IFIFO, Perm: 0o600, MtimeMatch: true}},
		{"etc", fileState{Type: unix.S_IFDIR, Perm: 0o755, MtimeMatch: true}},
		{"opq", fileState{Type: unix.S_IFDIR, Perm: 0o700, UID: 1000, MtimeMatch: true}},
		{"run", fileState{Type: unix.S_IFDIR, Perm: 0o755}}, // implicit parent
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, stateOf(t, filepath.Join(bottom, tt.path))); diff != "" {
				t.Errorf("lower layer %s (-want +got):\n%s", tt.path, diff)
			}
		})
	}
	var a, b unix.Stat_t
	if unix.Lstat(filepath.Join(bottom, "etc/secret"), &a) != nil || unix.Lstat(filepath.Join(bottom, "etc/secret-link"), &b) != nil || a.Ino != b.Ino {
		t.Errorf("etc/secret-link is not a hard link of etc/secret (inodes %d, %d)", a.Ino, b.Ino)
	}
	if got := stateOf(t, filepath.Join(top, "gone")); got.Type != unix.S_IFCHR || got.Rdev != 0 {
		t.Errorf("whiteout gone = %+v, want a 0:0 character device", got)
	}
	if got := stateOf(t, filepath.Join(top, "opq")); got.Xattr != "y" {
		t.Errorf("opq xattr trusted.overlay.opaque = %q, want y", got.Xattr)
	}
	checkMerged(t, rootfs.Layers)
}

// checkMerged mounts the layers with overlayfs and checks the merged view:
// whited-out files and the lower content of opaque directories are hidden.
func checkMerged(t *testing.T, layers []string) {
	t.Helper()
	mnt := t.TempDir()
	opts := "lowerdir=" + layers[0] + ":" + layers[1]
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, opts); err != nil {
		t.Skipf("SKIP merged-view check: cannot mount overlayfs here: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	if _, err := os.Lstat(filepath.Join(mnt, "gone")); !os.IsNotExist(err) {
		t.Errorf("merged view: gone is visible (err %v), want whited out", err)
	}
	entries, err := os.ReadDir(filepath.Join(mnt, "opq"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"c"}) {
		t.Errorf("merged view: opq holds %v, want only [c] (opaque)", names)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "etc/secret")); string(b) != "s3cret" {
		t.Errorf("merged view: etc/secret = %q, %v", b, err)
	}
}
