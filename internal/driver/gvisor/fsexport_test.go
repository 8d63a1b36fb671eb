package gvisor

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/drivertest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/testenv"
)

var _ driver.FilesystemExporter = (*Driver)(nil)

// TestExportFilesystem: the export holds the sandbox's writes in
// overlayfs upper format (whiteouts for deletions, opaque directories,
// links, modes), nothing of the image or of the driver's mount points,
// and the sandbox runs on.
func TestExportFilesystem(t *testing.T) {
	d, spec := newTestDriver(t)
	g := d.(*Driver)
	t.Cleanup(func() { _ = d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	spec.ID = "fsexport"
	if _, err := d.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Destroy(context.Background(), spec.ID) })
	script := "mkdir -p /data && printf hello > /data/f && chmod 640 /data/f && chown 12:34 /data/f && ln /data/f /data/hard && " +
		"ln -s f /data/sym && rm /bin/true && rm -rf /etc && mkdir /etc && echo new > /etc/only && echo t > /tmp/t"
	if res, err := drivertest.Shell(ctx, d, spec.ID, script); err != nil || res.ExitCode != 0 {
		t.Fatalf("write: %+v, %v", res, err)
	}
	dir := t.TempDir()
	if err := g.ExportFilesystem(ctx, spec.ID, dir); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "data/f")); err != nil || string(b) != "hello" {
		t.Fatalf("data/f = %q, %v", b, err)
	}
	var st, hard unix.Stat_t
	mustLstat(t, filepath.Join(dir, "data/f"), &st)
	mustLstat(t, filepath.Join(dir, "data/hard"), &hard)
	if st.Mode&0o7777 != 0o640 || st.Uid != 12 || st.Gid != 34 || st.Ino != hard.Ino {
		t.Errorf("data/f: mode %o owner %d:%d ino %d (hard link ino %d)", st.Mode, st.Uid, st.Gid, st.Ino, hard.Ino)
	}
	if target, err := os.Readlink(filepath.Join(dir, "data/sym")); err != nil || target != "f" {
		t.Errorf("data/sym -> %q, %v", target, err)
	}
	mustLstat(t, filepath.Join(dir, "bin/true"), &st)
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("bin/true: mode %o rdev %d, want a 0/0 whiteout", st.Mode, st.Rdev)
	}
	if v, err := getxattr(filepath.Join(dir, "etc"), "trusted.overlay.opaque"); err != nil || v != "y" {
		t.Errorf("etc opaque xattr = %q, %v", v, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "tmp/t")); err != nil || string(b) != "t\n" {
		t.Errorf("tmp/t = %q, %v", b, err)
	}
	for _, absent := range []string{"bin/sh", "proc", "dev", "sys", strings.TrimPrefix(guestRunDir, "/"), "tmp/" + tmpMarker} {
		if _, err := os.Lstat(filepath.Join(dir, absent)); err == nil {
			t.Errorf("%s is in the export: only the sandbox's writes belong there", absent)
		}
	}
	if res, err := drivertest.Shell(ctx, d, spec.ID, "cat /data/f"); err != nil || res.Stdout != "hello" {
		t.Fatalf("after the export the sandbox answers %+v, %v", res, err)
	}

	checkKind(t, g.ExportFilesystem(ctx, spec.ID, dir), errdefs.InvalidArgument, "is not empty")
	checkKind(t, g.ExportFilesystem(ctx, "nope", t.TempDir()), errdefs.NotFound, "not found")
}

func mustLstat(t *testing.T, p string, st *unix.Stat_t) {
	t.Helper()
	if err := unix.Lstat(p, st); err != nil {
		t.Fatal(err)
	}
}

func getxattr(p, name string) (string, error) {
	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

func checkKind(t *testing.T, err error, kind errdefs.Kind, msg string) {
	t.Helper()
	if errdefs.KindOf(err) != kind || !strings.Contains(err.Error(), msg) {
		t.Errorf("error = %v (%v), want %v containing %q", err, errdefs.KindOf(err), kind, msg)
	}
}

// TestUnpackUpperRefusesEscapes: archive entries cannot reach outside the
// root, through "..", a symlinked parent or a hard link.
func TestUnpackUpperRefusesEscapes(t *testing.T) {
	testenv.RequireRoot(t)
	outside := t.TempDir()
	for _, tc := range []struct {
		name    string
		entries []tar.Header
		want    string
	}{
		{"dotdot", []tar.Header{{Name: "./../x", Typeflag: tar.TypeReg}}, "name leaves the root"},
		{"absolute", []tar.Header{{Name: "/x", Typeflag: tar.TypeReg}}, "absolute name"},
		{"symlink parent", []tar.Header{
			{Name: "./a", Typeflag: tar.TypeSymlink, Linkname: outside},
			{Name: "./a/x", Typeflag: tar.TypeReg},
		}, "parent is not a directory of the archive"},
		{"missing parent", []tar.Header{{Name: "./a/x", Typeflag: tar.TypeReg}}, "parent is not a directory of the archive"},
		{"hard link out", []tar.Header{{Name: "./x", Typeflag: tar.TypeLink, Linkname: "../etc/passwd"}}, "no earlier file"},
		{"twice", []tar.Header{{Name: "./x", Typeflag: tar.TypeReg}, {Name: "./x", Typeflag: tar.TypeReg}}, "name appears twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, h := range tc.entries {
				h.Mode = 0o644
				if err := tw.WriteHeader(&h); err != nil {
					t.Fatal(err)
				}
			}
			tw.Close()
			err := unpackUpper(context.Background(), &buf, t.TempDir())
			if errdefs.KindOf(err) != errdefs.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("unpack = %v, want InvalidArgument %q", err, tc.want)
			}
			if entries, _ := os.ReadDir(outside); len(entries) > 0 {
				t.Fatalf("the archive wrote outside the root: %v", entries)
			}
		})
	}
}
