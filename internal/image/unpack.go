package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/errdefs"
)

const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
	// xattrPrefix marks an extended attribute in a PAX header.
	xattrPrefix = "SCHILY.xattr."
	// overlayXattrPrefix is reserved for overlayfs; a layer may not set it
	// (it could redirect lookups), only the unpacker does for opaque dirs.
	overlayXattrPrefix = "trusted.overlay."
)

// unpacker extracts one layer tar into root in overlayfs format. It never
// writes outside root: names with ".." are rejected and no path it writes
// passes through a symlink.
//
// It needs root: it sets ownership, makes device nodes and trusted xattrs.
type unpacker struct {
	root string
	// dirs caches relative paths known to be real directories under root.
	dirs     map[string]bool
	dirTimes []dirTime
	sawRoot  bool
}

type dirTime struct {
	path         string
	atime, mtime time.Time
}

// unpackTar extracts the tar stream r into the existing empty directory root.
func unpackTar(ctx context.Context, r io.Reader, root string) error {
	u := &unpacker{root: root, dirs: map[string]bool{"": true}}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read layer tar: %w", err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	return u.finish()
}

// cleanName turns a tar entry name into a clean path relative to the layer
// root ("" is the root). Names with a ".." element are rejected.
func cleanName(name string) (string, error) {
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", errdefs.New(errdefs.InvalidArgument, "path traversal: %q leaves the layer", name)
		}
	}
	return strings.TrimPrefix(path.Clean("/"+name), "/"), nil
}

func (u *unpacker) abs(rel string) string { return filepath.Join(u.root, filepath.FromSlash(rel)) }

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	dir, base := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if base == opaqueMarker {
		return u.opaque(dir)
	}
	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(dir, strings.TrimPrefix(base, whiteoutPrefix))
	}
	if rel == "" {
		if hdr.Typeflag != tar.TypeDir {
			return errdefs.New(errdefs.InvalidArgument, "layer root is not a directory")
		}
		u.sawRoot = true
		return u.setMeta(u.root, hdr)
	}
	if err := u.ensureDir(dir); err != nil {
		return err
	}
	if err := u.clear(rel, hdr.Typeflag == tar.TypeDir); err != nil {
		return err
	}
	if err := u.create(rel, hdr, r); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeLink {
		return nil // shares the inode, and its metadata, with its target
	}
	return u.setMeta(u.abs(rel), hdr)
}

// create makes the file system object hdr describes at rel.
func (u *unpacker) create(rel string, hdr *tar.Header, r io.Reader) error {
	p := u.abs(rel)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if u.dirs[rel] {
			return nil
		}
		u.dirs[rel] = true
		return os.Mkdir(p, 0o700)
	case tar.TypeReg, tar.TypeRegA:
		return writeRegular(p, r)
	case tar.TypeSymlink:
		return os.Symlink(hdr.Linkname, p)
	case tar.TypeLink:
		return u.hardlink(p, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		return unix.Mknod(p, mode|uint32(hdr.Mode&0o7777), int(dev))
	default:
		return errdefs.New(errdefs.InvalidArgument, "unsupported tar entry type %q", hdr.Typeflag)
	}
}

func writeRegular(p string, r io.Reader) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// hardlink links p to the earlier entry target of the same layer.
func (u *unpacker) hardlink(p, target string) error {
	rel, err := cleanName(target)
	if err != nil {
		return err
	}
	if err := u.checkDirs(path.Dir(rel)); err != nil {
		return err
	}
	fi, err := os.Lstat(u.abs(rel))
	if err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "hard link target %q", target)
	}
	if fi.IsDir() {
		return errdefs.New(errdefs.InvalidArgument, "hard link target %q is a directory", target)
	}
	// link(2) does not follow a symlink target, so this stays inside root.
	return os.Link(u.abs(rel), p)
}

// ensureDir makes sure rel is a real directory under root, creating missing
// directories (mode 0755, like docker) and refusing to pass a symlink.
func (u *unpacker) ensureDir(rel string) error {
	if rel == "." || u.dirs[rel] {
		return nil
	}
	if err := u.ensureDir(path.Dir(rel)); err != nil {
		return err
	}
	fi, err := os.Lstat(u.abs(rel))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(u.abs(rel), 0o755); err != nil {
			return err
		}
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		return errdefs.New(errdefs.InvalidArgument, "path traversal: %q is a symlink", rel)
	case !fi.IsDir():
		return errdefs.New(errdefs.InvalidArgument, "%q is not a directory", rel)
	}
	u.dirs[rel] = true
	return nil
}

// checkDirs is ensureDir without creating anything.
func (u *unpacker) checkDirs(rel string) error {
	if rel == "." || u.dirs[rel] {
		return nil
	}
	if err := u.checkDirs(path.Dir(rel)); err != nil {
		return err
	}
	fi, err := os.Lstat(u.abs(rel))
	if err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "hard link target directory")
	}
	if !fi.IsDir() {
		return errdefs.New(errdefs.InvalidArgument, "path traversal: %q is not a directory", rel)
	}
	u.dirs[rel] = true
	return nil
}

// clear removes what a later entry at rel replaces. A directory replacing a
// directory is kept (its metadata is updated), as tar semantics require.
func (u *unpacker) clear(rel string, isDir bool) error {
	fi, err := os.Lstat(u.abs(rel))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if isDir && fi.IsDir() {
		return nil
	}
	for d := range u.dirs {
		if d == rel || strings.HasPrefix(d, rel+"/") {
			delete(u.dirs, d)
		}
	}
	return os.RemoveAll(u.abs(rel))
}

// whiteout turns the OCI whiteout of name in dir into an overlayfs whiteout:
// a 0:0 character device.
func (u *unpacker) whiteout(dir, name string) error {
	if name == "" || name == "." || name == ".." || strings.HasPrefix(name, whiteoutPrefix) {
		return errdefs.New(errdefs.InvalidArgument, "invalid whiteout name %q", whiteoutPrefix+name)
	}
	if err := u.ensureDir(dir); err != nil {
		return err
	}
	rel := path.Join(dir, name)
	if err := u.clear(rel, false); err != nil {
		return err
	}
	return unix.Mknod(u.abs(rel), unix.S_IFCHR, 0)
}

// opaque marks dir opaque: overlayfs hides the lower layers' content of it.
func (u *unpacker) opaque(dir string) error {
	if err := u.ensureDir(dir); err != nil {
		return err
	}
	return unix.Lsetxattr(u.abs(dir), "trusted.overlay.opaque", []byte("y"), 0)
}

// setMeta applies ownership, mode, xattrs and times. The order matters:
// chown clears setuid bits and security.capability, so it goes first.
func (u *unpacker) setMeta(p string, hdr *tar.Header) error {
	if err := os.Lchown(p, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeSymlink {
		if err := unix.Fchmodat(unix.AT_FDCWD, p, uint32(hdr.Mode&0o7777), 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	if err := setXattrs(p, hdr.PAXRecords); err != nil {
		return err
	}
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	if hdr.Typeflag == tar.TypeDir {
		// Creating children changes a directory's mtime: set it at the end.
		u.dirTimes = append(u.dirTimes, dirTime{path: p, atime: atime, mtime: hdr.ModTime})
		return nil
	}
	return setTimes(p, atime, hdr.ModTime)
}

func setXattrs(p string, records map[string]string) error {
	for k, v := range records {
		name, ok := strings.CutPrefix(k, xattrPrefix)
		if !ok || strings.HasPrefix(name, overlayXattrPrefix) {
			continue
		}
		if err := unix.Lsetxattr(p, name, []byte(v), 0); err != nil {
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	return nil
}

func setTimes(p string, atime, mtime time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

func (u *unpacker) finish() error {
	if !u.sawRoot {
		if err := os.Chmod(u.root, 0o755); err != nil {
			return err
		}
	}
	for _, d := range u.dirTimes {
		// A directory a later entry replaced is gone: nothing to set.
		if err := setTimes(d.path, d.atime, d.mtime); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	return nil
}
