package image

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
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
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := writeTree(ctx, pw, dir)
		pw.CloseWithError(err)
		done <- err
	}()
	diffID, size, err := s.unpackLayer(ctx, pr, "")
	pr.CloseWithError(errors.New("unpack stopped"))
	if werr := <-done; err == nil && werr != nil {
		err = werr
	}
	if err != nil {
		return nil, fmt.Errorf("import directory %s: %w", dir, err)
	}
	defer s.unpin([]string{diffID})
	raw, err := json.Marshal(configFile(cfg, []v1.Hash{mustHash(diffID)}))
	if err != nil {
		return nil, fmt.Errorf("import directory %s: %w", dir, err)
	}
	img := &Image{Name: name, ID: digestOf(raw), Layers: []string{diffID}, Config: cfg}
	return s.record(img, map[string]int64{diffID: size})
}

func mustHash(s string) v1.Hash {
	h, err := v1.NewHash(s)
	if err != nil {
		panic(fmt.Sprintf("image: invalid digest %q: %v", s, err))
	}
	return h
}

// configFile is the OCI config of a den-built image.
func configFile(cfg Config, diffIDs []v1.Hash) *v1.ConfigFile {
	return &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      v1.Time{Time: time.Now().UTC()},
		RootFS:       v1.RootFS{Type: "layers", DiffIDs: diffIDs},
		Config: v1.Config{
			Env: cfg.Env, WorkingDir: cfg.WorkingDir, User: cfg.User,
			Entrypoint: cfg.Entrypoint, Cmd: cfg.Cmd,
		},
	}
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
	if err := writeTree(context.Background(), f, rootfsDir); err != nil {
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

// writeTree writes the tree at root to w as a tar stream in lexical order,
// with ownership, modes, mtimes, xattrs, hard links and device nodes.
// Sockets are skipped.
func writeTree(ctx context.Context, w io.Writer, root string) error {
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
		if err != nil || rel == "." || d.Type()&fs.ModeSocket != 0 {
			return err
		}
		return writeTreeEntry(tw, p, filepath.ToSlash(rel), links)
	})
	if err != nil {
		return fmt.Errorf("tar %s: %w", root, err)
	}
	return tw.Close()
}

func writeTreeEntry(tw *tar.Writer, p, rel string, links map[[2]uint64]string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	hdr, err := treeHeader(p, rel, fi)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
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

func treeHeader(p, rel string, fi fs.FileInfo) (*tar.Header, error) {
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
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords[xattrPrefix+k] = v
	}
	return hdr, nil
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
