package server

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/denhq/den/internal/errdefs"
)

// tarBlock is the size of a tar header; every entry counts it against the
// context's limit, so a tar of many empty files cannot exhaust inodes.
const tarBlock = 512

// unpackBuildContext unpacks the tar read from r, gzip-compressed or not,
// into the empty directory dir. It refuses (InvalidArgument) entries whose
// names leave dir and entries below a symbolic link of the archive, so
// nothing is ever written outside dir; it refuses (TooLarge) archives whose
// files and headers exceed limit bytes. Symbolic links are kept as they
// are, whatever their target. Devices, FIFOs and sockets are skipped.
func unpackBuildContext(r io.Reader, dir string, limit int64) error {
	br := bufio.NewReader(r)
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return errdefs.Wrap(errdefs.InvalidArgument, err, "build context is not a gzip-compressed tar")
		}
		defer zr.Close()
		src = zr
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("unpack build context: %w", err)
	}
	defer root.Close()
	u := &contextUnpacker{root: root, limit: limit, links: map[string]bool{}}
	tr := tar.NewReader(src)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return errdefs.Wrap(errdefs.InvalidArgument, err, "build context is not a tar archive")
		}
		if err := u.entry(hdr, tr); err != nil {
			return err
		}
	}
}

// contextUnpacker writes the entries of one build context.
type contextUnpacker struct {
	root  *os.Root
	limit int64
	used  int64
	// links are the symbolic links written so far, by cleaned name; no
	// entry may be written below one.
	links map[string]bool
}

func (u *contextUnpacker) entry(hdr *tar.Header, body io.Reader) error {
	u.used += tarBlock + max(hdr.Size, 0)
	if u.used > u.limit {
		return errdefs.New(errdefs.TooLarge, "build context is larger than %s: leave files out with .dockerignore", humanBytes(u.limit))
	}
	name, err := u.checkName(hdr.Name)
	if err != nil || name == "." {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return u.dir(name, hdr)
	case tar.TypeReg:
		return u.file(name, hdr, body)
	case tar.TypeSymlink:
		return u.symlink(name, hdr)
	case tar.TypeLink:
		return u.hardlink(name, hdr)
	}
	return nil
}

// checkName cleans an entry's name and refuses names that leave the
// context or pass through a symbolic link written before.
func (u *contextUnpacker) checkName(raw string) (string, error) {
	name := path.Clean(raw)
	if strings.HasPrefix(raw, "/") || (name != "." && !fs.ValidPath(name)) {
		return "", errdefs.New(errdefs.InvalidArgument, "build context: entry %q is outside the context: names must be relative and stay below it", raw)
	}
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		if u.links[dir] {
			return "", errdefs.New(errdefs.InvalidArgument, "build context: entry %q is below the symbolic link %q", raw, dir)
		}
	}
	return name, nil
}

// clear removes what an earlier entry of the same name left, unless both
// are directories, so that no write follows an old symbolic link.
func (u *contextUnpacker) clear(name string, dir bool) error {
	fi, err := u.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unpack build context: %w", err)
	}
	if dir && fi.IsDir() {
		return nil
	}
	for l := range u.links {
		if l == name || strings.HasPrefix(l, name+"/") {
			delete(u.links, l)
		}
	}
	if err := u.root.RemoveAll(name); err != nil {
		return fmt.Errorf("unpack build context: %w", err)
	}
	return nil
}

// parent creates the directories above name.
func (u *contextUnpacker) parent(name string) error {
	if d := path.Dir(name); d != "." {
		if err := u.root.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("unpack build context: %w", err)
		}
	}
	return nil
}

// mode is the permission bits (and setuid, setgid, sticky) of an entry.
func mode(hdr *tar.Header) os.FileMode {
	return hdr.FileInfo().Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)
}

func (u *contextUnpacker) dir(name string, hdr *tar.Header) error {
	if err := u.clear(name, true); err != nil {
		return err
	}
	if err := u.root.MkdirAll(name, 0o755); err != nil {
		return fmt.Errorf("unpack build context: %w", err)
	}
	// Owner rwx, so the entries below it can be written.
	if err := u.root.Chmod(name, mode(hdr)|0o700); err != nil {
		return fmt.Errorf("unpack build context: %w", err)
	}
	return nil
}

func (u *contextUnpacker) file(name string, hdr *tar.Header, body io.Reader) error {
	if err := u.clear(name, false); err != nil {
		return err
	}
	if err := u.parent(name); err != nil {
		return err
	}
	f, err := u.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("unpack build context: %w", err)
	}
	_, err = io.CopyN(f, body, hdr.Size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "build context: read %q", hdr.Name)
	}
	if err := u.root.Chmod(name, mode(hdr)); err != nil {
		return fmt.Errorf("unpack build context: %w", err)
	}
	if err := u.root.Chtimes(name, hdr.ModTime, hdr.ModTime); err != nil {
		return fmt.Errorf("unpack build context: %w", err)
	}
	return nil
}

func (u *contextUnpacker) symlink(name string, hdr *tar.Header) error {
	if err := u.clear(name, false); err != nil {
		return err
	}
	if err := u.parent(name); err != nil {
		return err
	}
	if err := u.root.Symlink(hdr.Linkname, name); err != nil {
		return fmt.Errorf("unpack build context: %w", err)
	}
	u.links[name] = true
	return nil
}

// hardlink links name to an earlier entry, which must itself be a valid
// name of the context.
func (u *contextUnpacker) hardlink(name string, hdr *tar.Header) error {
	target, err := u.checkName(hdr.Linkname)
	if err != nil {
		return err
	}
	if err := u.clear(name, false); err != nil {
		return err
	}
	if err := u.parent(name); err != nil {
		return err
	}
	if err := u.root.Link(target, name); err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "build context: hard link %q", hdr.Name)
	}
	if u.links[target] {
		u.links[name] = true
	}
	return nil
}

// humanBytes renders n as bytes, KiB, MiB or GiB, for messages.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	v, suffix := float64(n), ""
	for _, s := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if v < unit {
			break
		}
		v, suffix = v/unit, s
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0") + " " + suffix
}
