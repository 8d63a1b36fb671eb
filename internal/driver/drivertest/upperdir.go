package drivertest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
)

// upperLayer is the image layer the UpperDir tests put on top of the
// template's: what the script in upperScript changes. Entries ending in
// "/" are directories; the test process owns everything (root for drivers
// with isolation).
var upperLayer = map[string]string{
	"data/":           "",
	"data/modify":     "orig\n",
	"data/del":        "gone\n",
	"data/chown-me":   "c\n",
	"data/chmod-me":   "m\n",
	"data/hl-src":     "h\n",
	"data/mv-src":     "v\n",
	"data/emptydir/":  "",
	"data/dir-del/":   "",
	"data/dir-del/a":  "a\n",
	"data/opaque/":    "",
	"data/opaque/old": "o\n",
	"data/mvdir/":     "",
	"data/mvdir/y":    "y\n",
}

// upperScript makes every kind of root filesystem change.
const upperScript = `set -e
echo new > /data/new
echo more >> /data/modify
rm /data/del
chown 1000:1000 /data/chown-me
chmod 600 /data/chmod-me
mkdir /data/newdir
mkdir /data/gone && rmdir /data/gone
rmdir /data/emptydir
rm -r /data/dir-del
rm -r /data/opaque && mkdir /data/opaque && echo n > /data/opaque/new
mv /data/mv-src /data/mv-dst
mv /data/mvdir /data/mvdir2
ln /data/hl-src /data/hl-dst
ln -s /data/new /data/sym
echo t > /tmp/in-tmp
`

// upperWant is what upperScript leaves in UpperDir, as upperTree describes
// it. The hard links are checked apart.
var upperWant = map[string]string{
	"data":            "dir 755 0:0",
	"data/new":        "file 644 0:0 \"new\\n\"",
	"data/modify":     "file 644 0:0 \"orig\\nmore\\n\"",
	"data/del":        "whiteout",
	"data/chown-me":   "file 644 1000:1000 \"c\\n\"",
	"data/chmod-me":   "file 600 0:0 \"m\\n\"",
	"data/newdir":     "dir 755 0:0",
	"data/emptydir":   "whiteout",
	"data/dir-del":    "whiteout",
	"data/opaque":     "dir 755 0:0 opaque",
	"data/opaque/new": "file 644 0:0 \"n\\n\"",
	"data/mv-src":     "whiteout",
	"data/mv-dst":     "file 644 0:0 \"v\\n\"",
	"data/mvdir":      "whiteout",
	"data/mvdir2":     "dir 755 0:0",
	"data/mvdir2/y":   "file 644 0:0 \"y\\n\"",
	"data/hl-src":     "file 644 0:0 \"h\\n\"",
	"data/hl-dst":     "file 644 0:0 \"h\\n\"",
	"data/sym":        "symlink /data/new",
	"tmp/in-tmp":      "file 644 0:0 \"t\\n\"",
}

// writeUpperLayer creates upperLayer in a new directory.
func writeUpperLayer(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range upperLayer {
		path := filepath.Join(dir, name)
		var err error
		if strings.HasSuffix(name, "/") {
			err = os.MkdirAll(path, 0o755)
		} else if err = os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
			err = os.WriteFile(path, []byte(data), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// Mkdir and WriteFile apply the umask.
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		mode := os.FileMode(0o644)
		if e.IsDir() {
			mode = 0o755
		}
		return os.Chmod(path, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// upperTree describes every entry under dir: kind, permissions, owner,
// content or target, and "opaque" for directories overlayfs marked so.
func upperTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	tree := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		desc, err := describe(path)
		tree[rel] = desc
		return err
	})
	if err != nil {
		t.Fatalf("walk upper dir: %v", err)
	}
	return tree
}

func describe(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return "", err
	}
	owner := fmt.Sprintf("%o %d:%d", st.Mode&0o7777, st.Uid, st.Gid)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		if st.Rdev == 0 {
			return "whiteout", nil
		}
		return fmt.Sprintf("chardev %d", st.Rdev), nil
	case unix.S_IFDIR:
		buf := make([]byte, 8)
		n, err := unix.Lgetxattr(path, "trusted.overlay.opaque", buf)
		if err == nil && string(buf[:n]) == "y" {
			return "dir " + owner + " opaque", nil
		}
		return "dir " + owner, nil
	case unix.S_IFLNK:
		target, err := os.Readlink(path)
		return "symlink " + target, err
	case unix.S_IFREG:
		data, err := os.ReadFile(path)
		return fmt.Sprintf("file %s %q", owner, data), err
	}
	return fmt.Sprintf("mode %o", st.Mode), nil
}

// testUpperDir runs every kind of change in a sandbox with an UpperDir and
// checks, after Destroy, that each landed there in overlayfs upper format,
// and nothing else did: no mount point, no driver file. Drivers without
// isolation have no root filesystem to capture: for them it checks that
// UpperDir survives Destroy untouched.
func (s *suite) testUpperDir(t *testing.T) {
	d, spec := s.setup(t)
	if !s.upperDirSupported(t, d, spec) {
		return
	}
	ctx := testCtx(t)
	spec.UpperDir = t.TempDir()
	isolated := d.Capabilities().Isolation != "none"
	if isolated {
		spec.Image.Layers = append([]string{writeUpperLayer(t)}, spec.Image.Layers...)
	}
	before := treeSnapshot(t, spec.Image.Layers)
	s.create(t, ctx, d, spec)
	if !isolated {
		mustShell(t, ctx, d, spec.ID, "true")
	} else {
		if res := mustShell(t, ctx, d, spec.ID, upperScript+"cat /data/modify /data/hl-dst"); res.Stdout != "orig\nmore\nh\n" {
			t.Errorf("sandbox reads back %q", res.Stdout)
		}
	}
	if err := d.Destroy(ctx, spec.ID); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	s.assertNoLeftovers(t, spec.ID)
	assertSameTree(t, spec.Image.Layers, before)
	got := upperTree(t, spec.UpperDir)
	if !isolated {
		if len(got) > 0 {
			t.Errorf("upper dir of a sandbox without isolation = %q, want it empty", got)
		}
		return
	}
	want := upperWant
	if _, ok := got["tmp"]; ok { // copied up with the image's /tmp attributes
		want = mapWith(want, "tmp", imageEntry(t, spec.Image.Layers[1:], "tmp"))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("upper dir after the changes (-want +got):\n%s", diff)
	}
	assertHardLinked(t, filepath.Join(spec.UpperDir, "data/hl-src"), filepath.Join(spec.UpperDir, "data/hl-dst"))
}

// testUpperDirEmpty checks that a sandbox that changes nothing leaves
// UpperDir empty, and that Create made it the root directory (0755).
func (s *suite) testUpperDirEmpty(t *testing.T) {
	d, spec := s.setup(t)
	if !s.upperDirSupported(t, d, spec) {
		return
	}
	requireIsolation(t, d, "a root filesystem captured in UpperDir")
	ctx := testCtx(t)
	spec.UpperDir = t.TempDir()
	s.create(t, ctx, d, spec)
	if got := mustShell(t, ctx, d, spec.ID, "stat -c %a /; ls -A /tmp").Stdout; !strings.HasPrefix(got, "755\n") {
		t.Errorf("stat / and ls /tmp = %q, want mode 755 first", got)
	}
	if err := d.Destroy(ctx, spec.ID); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if got := upperTree(t, spec.UpperDir); len(got) > 0 {
		t.Errorf("upper dir of a sandbox that changed nothing = %q, want it empty", got)
	}
}

// testUpperDirRecover creates a sandbox with an UpperDir, reattaches to it
// from a new driver instance and destroys it there: the directory and the
// change made before the restart stay.
func (s *suite) testUpperDirRecover(t *testing.T) {
	d, spec := s.setup(t)
	if !s.upperDirSupported(t, d, spec) {
		return
	}
	ctx := testCtx(t)
	spec.UpperDir = t.TempDir()
	h := s.create(t, ctx, d, spec)
	isolated := d.Capabilities().Isolation != "none"
	if isolated {
		mustShell(t, ctx, d, spec.ID, "echo before > /root/state")
	}
	raw, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := s.newDriver(t)
	defer d2.Close()
	var persisted driver.Handle
	if err := json.Unmarshal(raw, &persisted); err != nil {
		t.Fatal(err)
	}
	if err := d2.Recover(ctx, &persisted); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if err := d2.Destroy(ctx, spec.ID); err != nil {
		t.Fatalf("Destroy after Recover: %v", err)
	}
	s.assertNoLeftovers(t, spec.ID)
	if _, err := os.Stat(spec.UpperDir); err != nil {
		t.Fatalf("upper dir after Destroy: %v", err)
	}
	if !isolated {
		return
	}
	if got, err := os.ReadFile(filepath.Join(spec.UpperDir, "root/state")); err != nil || string(got) != "before\n" {
		t.Errorf("root/state in the upper dir = %q, %v; want %q", got, err, "before\n")
	}
}

// testUpperDirInvalid creates sandboxes with unusable upper directories:
// each fails with InvalidArgument and leaves nothing behind.
func (s *suite) testUpperDirInvalid(t *testing.T) {
	d, spec := s.setup(t)
	ctx := testCtx(t)
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(full, "f")
	for _, tc := range []struct{ name, dir string }{
		{"relative", "upper"},
		{"unclean", t.TempDir() + "/."},
		{"comma", "/tmp/a,lowerdir=/"},
		{"missing", filepath.Join(t.TempDir(), "missing")},
		{"file", file},
		{"not empty", full},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := spec
			sp.ID += "-" + strings.ReplaceAll(tc.name, " ", "-")
			sp.UpperDir = tc.dir
			_, err := d.Create(ctx, sp)
			assertKind(t, "Create with upper dir "+tc.dir, err, errdefs.InvalidArgument)
			_, err = d.Status(ctx, sp.ID)
			assertKind(t, "Status after a failed Create", err, errdefs.NotFound)
			s.assertNoLeftovers(t, sp.ID)
		})
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("a failed Create removed the file in a non-empty upper dir: %v", err)
	}
}

// imageEntry describes the topmost entry name of layers.
func imageEntry(t *testing.T, layers []string, name string) string {
	t.Helper()
	for _, l := range layers {
		desc, err := describe(filepath.Join(l, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return desc
	}
	t.Fatalf("no layer has %s", name)
	return ""
}

func mapWith(m map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for key, val := range m {
		out[key] = val
	}
	out[k] = v
	return out
}

// assertHardLinked fails t unless a and b are one inode.
func assertHardLinked(t *testing.T, a, b string) {
	t.Helper()
	var sa, sb unix.Stat_t
	if err := unix.Lstat(a, &sa); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(b, &sb); err != nil {
		t.Fatal(err)
	}
	if sa.Ino != sb.Ino || sa.Dev != sb.Dev || sa.Nlink != 2 {
		t.Errorf("%s and %s: inodes %d and %d, links %d; want one inode with 2 links", a, b, sa.Ino, sb.Ino, sa.Nlink)
	}
}

// upperDirSupported reports whether d has Capabilities().UpperDir. When it
// has not, it checks what the contract says instead: a Create with an
// UpperDir fails with InvalidArgument and leaves nothing behind.
func (s *suite) upperDirSupported(t *testing.T, d driver.Driver, spec driver.Spec) bool {
	t.Helper()
	if d.Capabilities().UpperDir {
		return true
	}
	ctx := testCtx(t)
	spec.UpperDir = t.TempDir()
	_, err := d.Create(ctx, spec)
	assertKind(t, "Create with an UpperDir on a driver without Capabilities().UpperDir", err, errdefs.InvalidArgument)
	_, err = d.Status(ctx, spec.ID)
	assertKind(t, "Status after a Create with an UpperDir", err, errdefs.NotFound)
	s.assertNoLeftovers(t, spec.ID)
	return false
}
