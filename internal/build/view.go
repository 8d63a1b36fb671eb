package build

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// view is a read-only merged view of a stack of directories, the way
// overlayfs shows them: the topmost entry of a name wins, directories merge
// unless one is opaque, and a whiteout hides the name in the layers below.
// It reads the build context too (one directory, no overlay semantics, an
// ignore filter). Paths are slash-separated and relative to the root ("" is
// the root); nothing a view returns lies outside its directories, as it
// resolves symbolic links itself, inside the root.
//
// Reading the layers directly, instead of mounting an overlay, needs no
// privilege and leaves nothing mounted when a build is killed.
type view struct {
	// layers are the directories, topmost first.
	layers []string
	// overlay enables whiteouts and opaque directories.
	overlay bool
	// ignore hides build-context paths; nil hides nothing.
	ignore *ignorer
}

// node is one visible entry of a view.
type node struct {
	rel string
	// host is the path of the visible entry on the host.
	host string
	info fs.FileInfo
	// dirs are, for a directory, the host directories merged into it,
	// topmost first.
	dirs []string
}

func (n *node) isDir() bool     { return n.info.IsDir() }
func (n *node) isSymlink() bool { return n.info.Mode()&fs.ModeSymlink != 0 }

// root returns the root directory of v.
func (v *view) root() *node {
	if len(v.layers) == 0 {
		return &node{info: fakeDirInfo{}}
	}
	info, err := os.Lstat(v.layers[0])
	if err != nil {
		info = fakeDirInfo{}
	}
	return &node{host: v.layers[0], info: info, dirs: v.layers}
}

// child looks up name in the directory parent, without following a
// symbolic link at name. It fails with fs.ErrNotExist when name is absent.
func (v *view) child(parent *node, name string) (*node, error) {
	rel := path.Join(parent.rel, name)
	out := &node{rel: rel}
	for _, d := range parent.dirs {
		p := filepath.Join(d, name)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if v.overlay && isWhiteout(fi) {
			break
		}
		if out.info == nil {
			out.host, out.info = p, fi
		}
		if !fi.IsDir() || !out.info.IsDir() {
			break // a non-directory hides what is below, and is hidden by a directory
		}
		out.dirs = append(out.dirs, p)
		if v.overlay && isOpaque(p) {
			break
		}
	}
	if out.info == nil || (v.ignore != nil && v.ignore.hidden(out)) {
		return nil, &fs.PathError{Op: "lstat", Path: rel, Err: fs.ErrNotExist}
	}
	return out, nil
}

// lookup returns the entry at rel, without following symbolic links in any
// component; callers resolve rel first.
func (v *view) lookup(rel string) (*node, error) {
	n := v.root()
	for _, c := range splitRel(rel) {
		if !n.isDir() {
			return nil, &fs.PathError{Op: "lstat", Path: rel, Err: syscall.ENOTDIR}
		}
		var err error
		if n, err = v.child(n, c); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// readDir returns the names in the directory n, sorted.
func (v *view) readDir(n *node) ([]string, error) {
	seen := map[string]bool{}
	var names []string
	for _, d := range n.dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if seen[e.Name()] {
				continue
			}
			seen[e.Name()] = true
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	// Whiteouts and ignored names: keep what child finds.
	out := names[:0]
	for _, name := range names {
		if _, err := v.child(n, name); err == nil {
			out = append(out, name)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return out, nil
}

// maxSymlinks bounds symbolic link resolution, as the kernel's ELOOP does.
const maxSymlinks = 40

// resolve returns rel with symbolic links resolved inside the root, like
// securejoin: ".." never leaves the root, an absolute link target starts at
// the root. Components that do not exist are kept as they are, so resolve
// also serves paths about to be created. followLast says whether a symbolic
// link in the last component is followed.
func (v *view) resolve(rel string, followLast bool) (string, error) {
	todo := splitRel(rel)
	var done []string
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		if c == ".." {
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		cur := strings.Join(append(slices.Clone(done), c), "/")
		n, err := v.lookup(cur)
		if errors.Is(err, fs.ErrNotExist) {
			done = append(done, c)
			continue
		}
		if err != nil {
			return "", err
		}
		if n.isSymlink() && (len(todo) > 0 || followLast) {
			if links++; links > maxSymlinks {
				return "", &fs.PathError{Op: "resolve", Path: rel, Err: syscall.ELOOP}
			}
			target, err := os.Readlink(n.host)
			if err != nil {
				return "", err
			}
			if path.IsAbs(target) {
				done = nil
			}
			todo = append(splitRel(target), todo...)
			continue
		}
		if len(todo) > 0 && !n.isDir() {
			return "", &fs.PathError{Op: "resolve", Path: cur, Err: syscall.ENOTDIR}
		}
		done = append(done, c)
	}
	return strings.Join(done, "/"), nil
}

// stat resolves rel, following symbolic links, and returns its entry.
func (v *view) stat(rel string) (*node, error) {
	r, err := v.resolve(rel, true)
	if err != nil {
		return nil, err
	}
	return v.lookup(r)
}

// readFile returns the content of the file at rel, following links.
func (v *view) readFile(rel string) ([]byte, error) {
	n, err := v.stat(rel)
	if err != nil {
		return nil, err
	}
	if !n.info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", rel)
	}
	return os.ReadFile(n.host)
}

// splitRel splits a relative or absolute slash path into its non-empty,
// non-"." components; ".." is kept for resolve.
func splitRel(rel string) []string {
	var out []string
	for _, c := range strings.Split(rel, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// cleanRel turns any slash path into a clean path relative to the root,
// clamping ".." at the root ("/../a" and "a" are both "a"; "/" is "").
func cleanRel(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

// isWhiteout reports whether fi is an overlayfs whiteout: a 0/0 character
// device.
func isWhiteout(fi fs.FileInfo) bool {
	if fi.Mode()&fs.ModeCharDevice == 0 || fi.Mode()&fs.ModeDevice == 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Rdev == 0
}

// opaqueXattr marks an overlayfs directory that hides the layers below.
const opaqueXattr = "trusted.overlay.opaque"

func isOpaque(p string) bool {
	buf := make([]byte, 1)
	n, err := unix.Lgetxattr(p, opaqueXattr, buf)
	return err == nil && n == 1 && buf[0] == 'y'
}

// fakeDirInfo stands for a root directory that cannot be stat'ed (an empty
// view).
type fakeDirInfo struct{}

func (fakeDirInfo) Name() string       { return "/" }
func (fakeDirInfo) Size() int64        { return 0 }
func (fakeDirInfo) Mode() fs.FileMode  { return fs.ModeDir | 0o755 }
func (fakeDirInfo) ModTime() time.Time { return time.Time{} }
func (fakeDirInfo) IsDir() bool        { return true }
func (fakeDirInfo) Sys() any           { return nil }
