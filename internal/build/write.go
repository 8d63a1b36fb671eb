package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// meta is the metadata an entry gets when written.
type meta struct {
	// mode holds the permission, setuid, setgid and sticky bits.
	mode     uint32
	uid, gid int
	mtime    time.Time
	// xattrsFrom is a host path whose extended attributes are copied
	// (those of overlayfs excepted); "" for none.
	xattrsFrom string
}

// layerWriter writes the changes of one COPY, ADD or WORKDIR into an upper
// directory over the stage's layers, in overlayfs upper format. Paths are
// resolved in the merged view of both, so symbolic links of the image are
// followed inside its root and never outside; every directory it writes
// through in upper is a real directory it checked or made.
//
// A directory that exists below keeps its metadata: it is copied up as it
// is. New directories on the way to a destination get mode 0755 and the
// --chown owner (root without one).
type layerWriter struct {
	upper string
	view  *view
	// chown and chmod override the owner and mode of copied entries.
	chown *owner
	chmod *uint32
	now   time.Time
	// dirTimes are set last: writing children changes a directory's times.
	dirTimes []dirTime
	// links maps the (device, inode) of a source file with several links
	// to where it was written, to keep hard links.
	links map[[2]uint64]string
}

type dirTime struct {
	host  string
	mtime time.Time
}

func newLayerWriter(upper string, lower *view, chown *owner, chmod *uint32) *layerWriter {
	layers := append([]string{upper}, lower.layers...)
	return &layerWriter{upper: upper, view: &view{layers: layers, overlay: true},
		chown: chown, chmod: chmod, now: time.Now(), links: map[[2]uint64]string{}}
}

func (w *layerWriter) host(rel string) string {
	return filepath.Join(w.upper, filepath.FromSlash(rel))
}

// parentOwner owns directories made on the way to a destination.
func (w *layerWriter) parentOwner() owner {
	if w.chown != nil {
		return *w.chown
	}
	return owner{}
}

// mkdirAll makes rel a directory, resolving symbolic links, and returns
// the resolved path. Missing directories are made with mode 0755 and o.
func (w *layerWriter) mkdirAll(rel string, o owner) (string, error) {
	resolved, err := w.view.resolve(rel, true)
	if err != nil {
		return "", err
	}
	comps := splitRel(resolved)
	for i := range comps {
		if err := w.upperDir(strings.Join(comps[:i+1], "/"), o); err != nil {
			return "", err
		}
	}
	return resolved, nil
}

// upperDir makes the resolved path rel a real directory in upper: a copy
// of the directory below when there is one, else a new one owned by o.
func (w *layerWriter) upperDir(rel string, o owner) error {
	h := w.host(rel)
	n, err := w.view.lookup(rel)
	switch {
	case err == nil && n.isDir() && n.host == h:
		return nil
	case err == nil && n.isDir():
		if err := os.Mkdir(h, 0o700); err != nil {
			return err
		}
		return w.apply(h, metaOf(n.info, true, n.host), true, false)
	case err == nil:
		return &fs.PathError{Op: "mkdir", Path: "/" + rel, Err: syscall.ENOTDIR}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if err := os.Mkdir(h, 0o700); err != nil {
		return err
	}
	return w.apply(h, meta{mode: 0o755, uid: o.uid, gid: o.gid, mtime: w.now}, true, false)
}

// place prepares writing a non-directory at rel, whose parent is resolved:
// it makes the parent and removes what this layer has at rel. A symbolic
// link at rel is replaced, not followed.
func (w *layerWriter) place(rel string) (string, error) {
	parent := path.Dir(rel)
	if parent == "." {
		parent = ""
	}
	rp, err := w.mkdirAll(parent, w.parentOwner())
	if err != nil {
		return "", err
	}
	h := w.host(path.Join(rp, path.Base(rel)))
	if _, err := os.Lstat(h); err == nil {
		if err := os.RemoveAll(h); err != nil {
			return "", err
		}
	}
	return h, nil
}

// dirAt makes dst a directory for copied content and returns its resolved
// path. An existing directory (or a link to one) is kept as it is; a new
// one gets m; a non-directory in the way is replaced.
func (w *layerWriter) dirAt(dst string, m meta) (string, error) {
	resolved, err := w.view.resolve(dst, true)
	if err != nil {
		return "", err
	}
	n, err := w.view.lookup(resolved)
	if err == nil && n.isDir() {
		return w.mkdirAll(resolved, w.parentOwner())
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	h, err := w.place(resolved)
	if err != nil {
		return "", err
	}
	if err := os.Mkdir(h, 0o700); err != nil {
		return "", err
	}
	return resolved, w.apply(h, m, true, false)
}

// writeFile writes a regular file at dst with the content of r.
func (w *layerWriter) writeFile(dst string, r io.Reader, m meta) (string, error) {
	h, err := w.place(dst)
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(h, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	return h, w.apply(h, m, false, false)
}

func (w *layerWriter) symlink(dst, target string, m meta) error {
	h, err := w.place(dst)
	if err != nil {
		return err
	}
	if err := os.Symlink(target, h); err != nil {
		return err
	}
	return w.apply(h, m, false, true)
}

// mknod makes a device node or FIFO; typ is unix.S_IFCHR, S_IFBLK or
// S_IFIFO.
func (w *layerWriter) mknod(dst string, typ uint32, dev uint64, m meta) error {
	h, err := w.place(dst)
	if err != nil {
		return err
	}
	if err := unix.Mknod(h, typ|m.mode, int(dev)); err != nil {
		return err
	}
	return w.apply(h, m, false, false)
}

// link makes dst a hard link to the file at host, which this layer wrote.
func (w *layerWriter) link(dst, host string) error {
	h, err := w.place(dst)
	if err != nil {
		return err
	}
	return os.Link(host, h)
}

// apply sets ownership, mode, extended attributes and times. chown goes
// first: it clears setuid bits and security.capability.
func (w *layerWriter) apply(h string, m meta, isDir, isLink bool) error {
	if err := os.Lchown(h, m.uid, m.gid); err != nil {
		return err
	}
	if !isLink {
		if err := unix.Fchmodat(unix.AT_FDCWD, h, m.mode, 0); err != nil {
			return fmt.Errorf("chmod %s: %w", h, err)
		}
	}
	if m.xattrsFrom != "" {
		if err := copyXattrs(m.xattrsFrom, h); err != nil {
			return err
		}
	}
	if isDir {
		w.dirTimes = append(w.dirTimes, dirTime{host: h, mtime: m.mtime})
		return nil
	}
	return setMtime(h, m.mtime)
}

// finish sets the times of the directories written.
func (w *layerWriter) finish() error {
	for i := len(w.dirTimes) - 1; i >= 0; i-- {
		d := w.dirTimes[i]
		if err := setMtime(d.host, d.mtime); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func setMtime(h string, mtime time.Time) error {
	if mtime.IsZero() {
		return nil
	}
	ts := unix.NsecToTimespec(mtime.UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, h, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", h, err)
	}
	return nil
}

// metaOf returns the metadata of a source entry: its mode and times, and
// its owner when keepOwner (else root); xattrsFrom copies its extended
// attributes.
func metaOf(fi fs.FileInfo, keepOwner bool, xattrsFrom string) meta {
	m := meta{mode: uint32(fi.Mode().Perm()), mtime: fi.ModTime(), xattrsFrom: xattrsFrom}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		m.mode = st.Mode & 0o7777
		if keepOwner {
			m.uid, m.gid = int(st.Uid), int(st.Gid)
		}
	}
	return m
}

// override applies --chown and --chmod to m.
func (w *layerWriter) override(m meta) meta {
	if w.chown != nil {
		m.uid, m.gid = w.chown.uid, w.chown.gid
	}
	if w.chmod != nil {
		m.mode = *w.chmod
	}
	return m
}

// copyNode copies the entry n of src, recursively, to dst.
func (w *layerWriter) copyNode(ctx context.Context, src *copySource, n *node, dst string) error {
	xattrs := ""
	if src.keepOwner {
		xattrs = n.host
	}
	m := w.override(metaOf(n.info, src.keepOwner, xattrs))
	mode := n.info.Mode()
	switch {
	case mode.IsDir():
		return w.copyDir(ctx, src, n, dst, m)
	case mode.IsRegular():
		return w.copyFile(n, dst, m)
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(n.host)
		if err != nil {
			return err
		}
		return w.symlink(dst, target, m)
	case mode&fs.ModeNamedPipe != 0:
		return w.mknod(dst, unix.S_IFIFO, 0, m)
	case mode&fs.ModeDevice != 0:
		st := n.info.Sys().(*syscall.Stat_t)
		typ := uint32(unix.S_IFBLK)
		if mode&fs.ModeCharDevice != 0 {
			typ = unix.S_IFCHR
		}
		return w.mknod(dst, typ, st.Rdev, m)
	}
	return nil // sockets are not copied
}

func (w *layerWriter) copyDir(ctx context.Context, src *copySource, n *node, dst string, m meta) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rd, err := w.dirAt(dst, m)
	if err != nil {
		return err
	}
	names, err := src.view.readDir(n)
	if err != nil {
		return err
	}
	for _, name := range names {
		c, err := src.view.child(n, name)
		if err != nil {
			return err
		}
		if err := w.copyNode(ctx, src, c, path.Join(rd, name)); err != nil {
			return err
		}
	}
	return nil
}

// copyFile copies a regular file, keeping hard links between the files of
// one COPY.
func (w *layerWriter) copyFile(n *node, dst string, m meta) error {
	st, _ := n.info.Sys().(*syscall.Stat_t)
	var key [2]uint64
	if st != nil && st.Nlink > 1 {
		key = [2]uint64{st.Dev, st.Ino}
		if prev, ok := w.links[key]; ok {
			if err := w.link(dst, prev); err == nil {
				return nil
			}
		}
	}
	f, err := os.Open(n.host)
	if err != nil {
		return err
	}
	defer f.Close()
	h, err := w.writeFile(dst, f, m)
	if err != nil {
		return err
	}
	if st != nil && st.Nlink > 1 {
		w.links[key] = h
	}
	return nil
}

// copyXattrs copies the extended attributes of from to to, except those of
// overlayfs.
func copyXattrs(from, to string) error {
	size, err := unix.Llistxattr(from, nil)
	if err != nil || size == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			err = nil
		}
		return err
	}
	buf := make([]byte, size)
	if size, err = unix.Llistxattr(from, buf); err != nil {
		return err
	}
	for _, k := range strings.Split(strings.TrimRight(string(buf[:size]), "\x00"), "\x00") {
		if k == "" || strings.HasPrefix(k, "trusted.overlay.") {
			continue
		}
		val := make([]byte, 64*1024)
		n, err := unix.Lgetxattr(from, k, val)
		if err != nil {
			return fmt.Errorf("get xattr %s: %w", k, err)
		}
		if err := unix.Lsetxattr(to, k, val[:n], 0); err != nil {
			return fmt.Errorf("set xattr %s: %w", k, err)
		}
	}
	return nil
}
