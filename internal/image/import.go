package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/denhq/den/internal/errdefs"
)

// Import reads an image from r, a docker-archive tar (`docker save`) or an
// OCI image-layout tar, unpacks its layers and records it as name. With name
// "" the archive's own name is used (RepoTags[0] of a docker archive, the
// io.containerd.image.name or org.opencontainers.image.ref.name annotation of
// an OCI layout); when it has none Import fails with InvalidArgument.
//
// Importing a name that exists moves the name to the new image, as
// `docker load` does. Every layer's content is checked against its diff ID;
// a corrupt layer fails the import with InvalidArgument and nothing is
// recorded. progress may be nil.
func (s *Store) Import(ctx context.Context, r io.Reader, name string, progress func(Progress)) (*Image, error) {
	if progress == nil {
		progress = func(Progress) {}
	}
	if name != "" {
		if err := validateName(name); err != nil {
			return nil, fmt.Errorf("import image: %w", err)
		}
	}
	work, err := os.MkdirTemp(s.tmpDir(), "import-")
	if err != nil {
		return nil, fmt.Errorf("import image: %w", err)
	}
	defer s.removeWork(work)
	archive := filepath.Join(work, "archive.tar")
	if err := spool(ctx, r, archive, progress); err != nil {
		return nil, fmt.Errorf("import image: read archive: %w", err)
	}
	src, err := openArchive(archive, work, name)
	if err != nil {
		return nil, fmt.Errorf("import image: %w", err)
	}
	img, err := s.importImage(ctx, src, progress)
	if err != nil {
		return nil, fmt.Errorf("import image %s: %w", src.name, err)
	}
	return img, nil
}

func (s *Store) removeWork(dir string) {
	if err := removeTree(dir); err != nil {
		s.log.Warn("remove import work directory", "path", dir, "err", err)
	}
}

// spool copies r to the file path, reporting progress as it goes.
func spool(ctx context.Context, r io.Reader, path string, progress func(Progress)) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	var n int64
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			f.Close()
			return err
		}
		m, rerr := r.Read(buf)
		if _, err := f.Write(buf[:m]); err != nil {
			f.Close()
			return err
		}
		n += int64(m)
		progress(Progress{Phase: "reading", Current: n})
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			f.Close()
			return rerr
		}
	}
	return f.Close()
}

// archiveFormat names the top-level files of an image tar that tell its format.
type archiveFormat struct {
	dockerManifest bool // manifest.json
	ociLayout      bool // oci-layout
}

func detectFormat(path string) (archiveFormat, error) {
	var af archiveFormat
	f, err := os.Open(path)
	if err != nil {
		return af, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return af, nil
		}
		if err != nil {
			return af, errdefs.Wrap(errdefs.InvalidArgument, err, "archive is not a tar file")
		}
		switch filepath.Clean(hdr.Name) {
		case "manifest.json":
			af.dockerManifest = true
		case "oci-layout":
			af.ociLayout = true
		}
	}
}

// openArchive opens the image in the archive at path. An OCI layout is
// extracted into work first. Docker ≥ 25 writes both formats in one tar;
// manifest.json is preferred then.
func openArchive(path, work, name string) (*source, error) {
	af, err := detectFormat(path)
	if err != nil {
		return nil, err
	}
	switch {
	case af.dockerManifest:
		return openDockerArchive(path, name)
	case af.ociLayout:
		dir := filepath.Join(work, "layout")
		if err := extractLayout(path, dir); err != nil {
			return nil, err
		}
		idx, err := layout.ImageIndexFromPath(dir)
		if err != nil {
			return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "read OCI layout")
		}
		return pickOCIImage(idx, name)
	default:
		return nil, errdefs.New(errdefs.InvalidArgument, "archive is neither a docker archive (no manifest.json) nor an OCI layout (no oci-layout)")
	}
}

func openDockerArchive(path, name string) (*source, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(path) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "read docker archive manifest.json")
	}
	if len(m) != 1 {
		return nil, errdefs.New(errdefs.InvalidArgument, "docker archive holds %d images, want exactly 1", len(m))
	}
	if name == "" {
		if len(m[0].RepoTags) == 0 {
			return nil, errdefs.New(errdefs.InvalidArgument, "docker archive has no RepoTags: give the image a name")
		}
		name = m[0].RepoTags[0]
		if err := validateName(name); err != nil {
			return nil, err
		}
	}
	img, err := tarball.Image(opener, nil)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "read docker archive")
	}
	return &source{img: img, name: name}, nil
}

// extractLayout extracts the regular files and directories of the tar at
// path into dir; an OCI layout needs nothing else.
func extractLayout(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return errdefs.Wrap(errdefs.InvalidArgument, err, "read OCI layout tar")
		}
		rel, err := cleanName(hdr.Name)
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.FromSlash(rel))
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeReg, tar.TypeRegA:
			err = extractFile(p, tr)
		}
		if err != nil {
			return fmt.Errorf("extract OCI layout: %w", err)
		}
	}
}

func extractFile(p string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return writeRegular(p, r)
}
