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
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/errdefs"
)

// DefaultPath is the PATH builders put in an image's environment.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ImportDir records the root filesystem in dir as a one-layer image called
// name with configuration cfg. dir is copied (ownership, modes, xattrs, hard
// links, device nodes and mtimes kept), not moved. Importing a name that
// exists moves the name to the new image.
func (s *Store) ImportDir(ctx context.Context, dir string, name string, cfg Config) (*Image, error) {
	if err := validateName(name); err != nil {
		return nil, fmt.Errorf("import directory %s: %w", dir, err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, errdefs.New(errdefs.InvalidArgument, "import directory %s: not a directory", dir)
	}
	pins := &pinSet{s: s}
	defer pins.release()
	blob, size, err := s.storeLayer(ctx, func(w io.Writer) error { return writeTree(ctx, w, dir, treeOptions{}) }, pins)
	if err != nil {
		return nil, fmt.Errorf("import directory %s: %w", dir, err)
	}
	history := []History{{CreatedBy: "den: import directory"}}
	img, err := s.newImage(name, []string{blob.DiffID}, []Layer{blob}, cfg, history, pins)
	if err != nil {
		return nil, fmt.Errorf("import directory %s: %w", dir, err)
	}
	return s.record(img, map[string]int64{blob.DiffID: size})
}

func mustHash(s string) v1.Hash {
	h, err := v1.NewHash(s)
	if err != nil {
		panic(fmt.Sprintf("image: invalid digest %q: %v", s, err))
	}
	return h
}

// WriteDockerArchive writes the root filesystem in rootfsDir as a one-layer
// image called ref to w in docker-archive format (what `docker save`
// writes), with PATH set in its environment.
func WriteDockerArchive(w io.Writer, rootfsDir, ref string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "write docker archive")
	}
	f, err := os.CreateTemp("", "den-layer-*.tar")
	if err != nil {
		return fmt.Errorf("write docker archive: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := writeTree(context.Background(), f, rootfsDir, treeOptions{}); err != nil {
		return fmt.Errorf("write docker archive: %w", err)
	}
	layer, err := tarball.LayerFromFile(f.Name())
	if err != nil {
		return fmt.Errorf("write docker archive: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("write docker archive: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("write docker archive: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = runtime.GOARCH, "linux"
	cf.Config.Env = []string{DefaultPath}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return fmt.Errorf("write docker archive: %w", err)
	}
	if err := tarball.Write(tag, img, w); err != nil {
		return fmt.Errorf("write docker archive: %w", err)
	}
	return nil
}

// treeOptions changes what writeTree writes.
type treeOptions struct {
	// overlay says root is an overlayfs upper directory: its whiteouts (0/0
	// character devices) and opaque directories become OCI whiteout
	// entries, and overlayfs's own xattrs are left out.
	overlay bool
	// exclude are slash-separated paths relative to root left out, with
	// everything below them.
	exclude map[string]bool
}

// writeTree writes the tree at root to w as a tar stream in lexical order,
// with ownership, modes, mtimes, xattrs, hard links and device nodes.
// Sockets are skipped.
func writeTree(ctx context.Context, w io.Writer, root string, opts treeOptions) error {
	tw := tar.NewWriter(w)
	links := map[[2]uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || d.Type()&fs.ModeSocket != 0 {
			return err
		}
		rel = filepath.ToSlash(rel)
		if opts.exclude[rel] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if rel == "." {
			if opts.overlay {
				return writeOpaqueMarker(tw, p, "")
			}
			return nil
		}
		return writeTreeEntry(tw, p, rel, links, opts)
	})
	if err != nil {
		return fmt.Errorf("tar %s: %w", root, err)
	}
	return tw.Close()
}

func writeTreeEntry(tw *tar.Writer, p, rel string, links map[[2]uint64]string, opts treeOptions) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	if opts.overlay && fi.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0 {
		return writeWhiteout(tw, rel, fi)
	}
	hdr, err := treeHeader(p, rel, fi, opts.overlay)
	if err != nil {
		return err
	}
	if fi.Mode().IsRegular() && st.Nlink > 1 {
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := links[key]; ok {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
		} else {
			links[key] = rel
		}
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if opts.overlay && fi.IsDir() {
		if err := writeOpaqueMarker(tw, p, rel+"/"); err != nil {
			return err
		}
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyN(tw, f, hdr.Size)
	return err
}

// writeWhiteout writes the OCI whiteout of the overlayfs whiteout fi at rel.
func writeWhiteout(tw *tar.Writer, rel string, fi fs.FileInfo) error {
	dir, base := path.Split(rel)
	st := fi.Sys().(*syscall.Stat_t)
	return tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: dir + whiteoutPrefix + base, Mode: int64(st.Mode & 0o7777),
		Uid: int(st.Uid), Gid: int(st.Gid), ModTime: fi.ModTime(), Format: tar.FormatPAX,
	})
}

// writeOpaqueMarker writes the OCI opaque marker in the directory p (at
// prefix in the tar) when overlayfs marked it opaque.
func writeOpaqueMarker(tw *tar.Writer, p, prefix string) error {
	opaque, err := isOpaque(p)
	if err != nil || !opaque {
		return err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: prefix + opaqueMarker, ModTime: fi.ModTime(), Format: tar.FormatPAX})
}

// isOpaque reports whether overlayfs marked the directory p opaque, with
// the trusted.* xattr (mounted by root) or the user.* one (userxattr).
func isOpaque(p string) (bool, error) {
	buf := make([]byte, 8)
	for _, x := range []string{"trusted.overlay.opaque", "user.overlay.opaque"} {
		n, err := unix.Lgetxattr(p, x, buf)
		if err == nil && string(buf[:n]) == "y" {
			return true, nil
		}
		if err != nil && !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.ERANGE) {
			return false, fmt.Errorf("get xattr %s of %s: %w", x, p, err)
		}
	}
	return false, nil
}

// overlayXattrs are the prefixes of the xattrs overlayfs keeps in an upper
// directory for itself.
var overlayXattrs = []string{overlayXattrPrefix, "user.overlay."}

// unsupportedOverlayXattrs mark upper entries whose content lives in a
// lower layer (redirect_dir, metacopy): an upper directory alone cannot
// describe them.
var unsupportedOverlayXattrs = []string{"redirect", "metacopy"}

func treeHeader(p, rel string, fi fs.FileInfo, overlay bool) (*tar.Header, error) {
	var link string
	if fi.Mode()&fs.ModeSymlink != 0 {
		var err error
		if link, err = os.Readlink(p); err != nil {
			return nil, err
		}
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return nil, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	hdr.Name = rel
	if fi.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = int(st.Uid), int(st.Gid), "", ""
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	hdr.Mode = int64(st.Mode & 0o7777)
	hdr.Format = tar.FormatPAX
	xattrs, err := readXattrs(p)
	if err != nil {
		return nil, err
	}
	for k, v := range xattrs {
		if overlay {
			if skip, err := overlayXattr(rel, k); skip || err != nil {
				if err != nil {
					return nil, err
				}
				continue
			}
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords[xattrPrefix+k] = v
	}
	return hdr, nil
}

// overlayXattr reports whether the xattr k of an upper directory entry is
// overlayfs's own (left out of the layer), and fails for those den cannot
// turn into a layer.
func overlayXattr(rel, k string) (bool, error) {
	for _, prefix := range overlayXattrs {
		name, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		if slices.Contains(unsupportedOverlayXattrs, name) {
			return true, errdefs.New(errdefs.Unsupported, "%q has overlayfs xattr %s: mount the overlay without redirect_dir and metacopy", rel, k)
		}
		return true, nil
	}
	return false, nil
}

// readXattrs returns the extended attributes of p (not following a symlink).
func readXattrs(p string) (map[string]string, error) {
	size, err := unix.Llistxattr(p, nil)
	if err != nil || size == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			err = nil
		}
		return nil, err
	}
	buf := make([]byte, size)
	if size, err = unix.Llistxattr(p, buf); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, k := range strings.Split(strings.TrimRight(string(buf[:size]), "\x00"), "\x00") {
		val := make([]byte, 64*1024)
		n, err := unix.Lgetxattr(p, k, val)
		if err != nil {
			return nil, fmt.Errorf("get xattr %s of %s: %w", k, p, err)
		}
		out[k] = string(val[:n])
	}
	return out, nil
}
