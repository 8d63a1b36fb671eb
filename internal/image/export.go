package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/denhq/den/internal/errdefs"
)

// Export formats.
const (
	// FormatDockerArchive is what `docker save` writes and `docker load` reads.
	FormatDockerArchive = "docker-archive"
	// FormatOCI is a tar of an OCI image layout.
	FormatOCI = "oci"
)

// Export writes the image ref to w as an archive that Import (and docker
// load, for docker-archive) reads back to the same image ID and diff IDs:
// format is FormatDockerArchive or FormatOCI. The stored blobs are written
// as they are. The archive names the image after its name (RepoTags, or
// the io.containerd.image.name annotation) when that is a valid reference.
//
// It fails with InvalidArgument for an unknown format and
// FailedPrecondition for an image recorded by an older den without blobs.
func (s *Store) Export(ctx context.Context, ref, format string, w io.Writer) error {
	if format != FormatDockerArchive && format != FormatOCI {
		return errdefs.New(errdefs.InvalidArgument, "export image %s: unknown format %q: want %q or %q", ref, format, FormatDockerArchive, FormatOCI)
	}
	img, err := s.Get(ref)
	if err != nil {
		return fmt.Errorf("export image: %w", err)
	}
	pins := &pinSet{s: s}
	defer pins.release()
	pins.add(imageContent(img)...)
	si, err := s.v1Image(img, func(Progress) {})
	if err != nil {
		return fmt.Errorf("export image %s: %w", ref, err)
	}
	cw := &ctxWriter{ctx: ctx, w: w}
	if format == FormatDockerArchive {
		err = tarball.Write(archiveRef(img), si, cw)
	} else {
		err = s.writeOCILayout(ctx, img, cw)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("export image %s: %w", ref, err)
	}
	return nil
}

// archiveRef is the reference a docker archive tags img with: its name
// when that is a valid tag, else an untagged digest reference.
func archiveRef(img *Image) name.Reference {
	if t, err := name.NewTag(img.Name); err == nil {
		return t
	}
	d, _ := name.NewDigest("untagged@" + img.Digest)
	return d
}

// writeOCILayout streams an OCI image layout of img as a tar to w.
func (s *Store) writeOCILayout(ctx context.Context, img *Image, w io.Writer) error {
	manifest, err := s.readBlob(img.Digest)
	if err != nil {
		return err
	}
	m, err := v1.ParseManifest(bytes.NewReader(manifest))
	if err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "parse manifest %s", img.Digest)
	}
	index, err := layoutIndex(img, manifest, m.MediaType)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	files := []struct {
		name string
		data []byte
	}{{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)}, {"index.json", index}}
	for _, f := range files {
		if err := writeTarFile(tw, f.name, bytes.NewReader(f.data), int64(len(f.data))); err != nil {
			return err
		}
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
	}
	blobs := []string{img.Digest, img.ID}
	for _, b := range img.Blobs {
		blobs = append(blobs, b.Digest)
	}
	seen := map[string]bool{}
	for _, b := range blobs {
		if seen[b] {
			continue
		}
		seen[b] = true
		if err := s.writeBlobEntry(ctx, tw, b); err != nil {
			return err
		}
	}
	return tw.Close()
}

// layoutIndex is the index.json of an OCI layout holding img.
func layoutIndex(img *Image, manifest []byte, mt types.MediaType) ([]byte, error) {
	if mt == "" {
		mt = types.OCIManifestSchema1
	}
	desc := v1.Descriptor{MediaType: mt, Size: int64(len(manifest)), Digest: mustHash(img.Digest)}
	if img.Name != "" {
		desc.Annotations = map[string]string{annotationContainerdName: img.Name}
		if t, err := name.NewTag(img.Name); err == nil {
			desc.Annotations[annotationRefName] = t.TagStr()
		}
	}
	return json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{desc}})
}

func (s *Store) writeBlobEntry(ctx context.Context, tw *tar.Writer, digest string) error {
	f, err := os.Open(s.blobPath(digest))
	if err != nil {
		return fmt.Errorf("open blob %s: %w", digest, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return writeTarFile(tw, "blobs/sha256/"+hexOf(digest), ctxReader{ctx, f}, fi.Size())
}

func writeTarFile(tw *tar.Writer, name string, r io.Reader, size int64) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0)}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := io.CopyN(tw, r, size)
	return err
}

// ctxWriter fails writes once ctx is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
