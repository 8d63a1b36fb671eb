package build

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
)

// copySource is where COPY and ADD read: the build context, a stage or an
// image.
type copySource struct {
	// desc names it in messages: "the build context", "stage builder".
	desc string
	view *view
	// keepOwner keeps the owner of copied entries; build-context files
	// are copied as root, as Docker does.
	keepOwner bool
}

// hasMeta reports whether a source path has glob characters.
func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// glob returns the paths of src matching pattern (relative to its root,
// "" is the root), sorted; each element may be a glob (path.Match). A
// pattern without glob characters is returned as it is, for the caller
// to look up.
func glob(v *view, pattern string) ([]string, error) {
	rel := cleanRel(pattern)
	if !hasMeta(rel) {
		return []string{rel}, nil
	}
	matches := []string{""}
	for _, c := range splitRel(rel) {
		var next []string
		for _, m := range matches {
			if !hasMeta(c) {
				next = append(next, path.Join(m, c))
				continue
			}
			dir, err := v.stat(m)
			if err != nil || !dir.isDir() {
				continue
			}
			names, err := v.readDir(dir)
			if err != nil {
				return nil, err
			}
			for _, name := range names {
				ok, err := path.Match(c, name)
				if err != nil {
					return nil, fmt.Errorf("invalid pattern %q: %w", pattern, err)
				}
				if ok {
					next = append(next, path.Join(m, name))
				}
			}
		}
		matches = next
	}
	var out []string
	for _, m := range matches {
		if _, err := v.stat(m); err == nil {
			out = append(out, m)
		}
	}
	return out, nil
}

// treeHasher hashes a tree of a view for the cache key: names, types,
// modes, owners (when kept), sizes, contents, link targets and device
// numbers; not times, as Docker's content checksums do not.
type treeHasher struct {
	v         *view
	keepOwner bool
	h         hash.Hash
}

// hashNode returns the hash of the tree at n.
func hashNode(v *view, n *node, keepOwner bool) (string, error) {
	t := &treeHasher{v: v, keepOwner: keepOwner, h: sha256.New()}
	if err := t.add("", n); err != nil {
		return "", err
	}
	return hex.EncodeToString(t.h.Sum(nil)), nil
}

func (t *treeHasher) field(s string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(s)))
	t.h.Write(n[:])
	t.h.Write([]byte(s))
}

func (t *treeHasher) add(rel string, n *node) error {
	fi := n.info
	st, _ := fi.Sys().(*syscall.Stat_t)
	t.field(rel)
	t.field(fi.Mode().Type().String())
	if st != nil {
		t.field(strconv.FormatUint(uint64(st.Mode&0o7777), 8))
		if t.keepOwner {
			t.field(fmt.Sprintf("%d:%d", st.Uid, st.Gid))
		}
	}
	switch {
	case fi.Mode().IsRegular():
		return t.content(n.host)
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(n.host)
		if err != nil {
			return err
		}
		t.field(target)
	case fi.Mode()&fs.ModeDevice != 0 && st != nil:
		t.field(strconv.FormatUint(st.Rdev, 10))
	case fi.IsDir():
		return t.dir(rel, n)
	}
	return nil
}

func (t *treeHasher) content(host string) error {
	f, err := os.Open(host)
	if err != nil {
		return err
	}
	defer f.Close()
	c := sha256.New()
	size, err := io.Copy(c, f)
	if err != nil {
		return err
	}
	t.field(strconv.FormatInt(size, 10))
	t.field(hex.EncodeToString(c.Sum(nil)))
	return nil
}

func (t *treeHasher) dir(rel string, n *node) error {
	names, err := t.v.readDir(n)
	if err != nil {
		return err
	}
	for _, name := range names {
		c, err := t.v.child(n, name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := t.add(path.Join(rel, name), c); err != nil {
			return err
		}
	}
	return nil
}
