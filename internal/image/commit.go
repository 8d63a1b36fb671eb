package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"

	"github.com/denhq/den/internal/errdefs"
)

// CommitLayer turns dir, a directory in overlayfs upper format, into a
// stored layer and returns it. Whiteouts (0/0 character devices) become
// ".wh.<name>" entries and opaque directories (xattr trusted.overlay.opaque
// or user.overlay.opaque "y") get a ".wh..wh..opq" entry; ownership, modes,
// other xattrs, hard links, symlinks, device nodes and mtimes are kept.
// exclude lists slash-separated paths relative to dir to leave out, with
// everything below them. dir is not modified; an empty dir gives a valid
// empty layer. The same content gives the same layer.
//
// The layer's gzip blob is stored and the layer unpacked exactly as
// unpacking the blob gives it. The new layer is held, so no GC deletes it,
// until an image made by Create references it or a Lease on it is released.
//
// An upper directory written with overlayfs's redirect_dir or metacopy
// features (content left in a lower layer) fails with Unsupported.
func (s *Store) CommitLayer(ctx context.Context, dir string, exclude []string) (Layer, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return Layer{}, errdefs.New(errdefs.InvalidArgument, "commit layer %s: not a directory", dir)
	}
	opts := treeOptions{overlay: true, exclude: map[string]bool{}}
	for _, e := range exclude {
		rel := strings.TrimPrefix(path.Clean("/"+e), "/")
		if rel == "" {
			return Layer{}, errdefs.New(errdefs.InvalidArgument, "commit layer %s: exclude %q names the whole directory", dir, e)
		}
		opts.exclude[rel] = true
	}
	pins := &pinSet{s: s}
	defer pins.release()
	blob, size, err := s.storeLayer(ctx, func(w io.Writer) error { return writeTree(ctx, w, dir, opts) }, pins)
	if err != nil {
		return Layer{}, fmt.Errorf("commit layer %s: %w", dir, err)
	}
	if kept := s.hold(blob, size); kept != blob {
		pins.drop(blob.Digest) // the layer was stored already, with another blob
		return kept, nil
	}
	return blob, nil
}

// hold records the new layer blob (unpacked size size) in the index's maps
// and holds it. When the layer was already stored with another blob, that
// one is kept and returned; the new blob is left to GC.
func (s *Store) hold(blob Layer, size int64) Layer {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held[blob.DiffID] = true
	s.idx.Layers[blob.DiffID] = size
	if old, ok := s.idx.LayerBlobs[blob.DiffID]; ok && s.hasBlob(old.Digest) {
		return old
	}
	s.idx.LayerBlobs[blob.DiffID] = blob
	return blob
}

// LayerDir returns the absolute path of the unpacked layer diffID, in
// overlayfs format. It fails with NotFound when the layer is not stored.
func (s *Store) LayerDir(diffID string) (string, error) {
	if !validDigest(diffID) {
		return "", errdefs.New(errdefs.InvalidArgument, "layer directory: invalid diff ID %q", diffID)
	}
	dir := s.layerDir(diffID)
	if _, err := os.Stat(dir); err != nil {
		return "", errdefs.New(errdefs.NotFound, "layer %s not found", diffID)
	}
	return dir, nil
}

// Create records an image called name made of the stored layers (diff IDs,
// bottom first) with configuration cfg and history (oldest first). The
// config's creation time is the latest time in history (entries without a
// time get it), else now: the same inputs give the same image ID, so a
// build tagged twice is one image. With name "" the image is untagged:
// List shows it with an empty name and only its ID finds it (Tag names
// it). It writes the image's config and,
// when every layer has a blob, its manifest. A layer from an image recorded
// by an older den has no blob: the image is then recorded without a
// manifest and runs, but cannot be pushed or exported. Creating a name that
// exists moves the name to the new image.
//
// It fails with InvalidArgument for a bad name and NotFound when a layer is
// not stored.
func (s *Store) Create(ctx context.Context, name string, layers []string, cfg Config, history []History) (*Image, error) {
	if name != "" {
		if err := validateName(name); err != nil {
			return nil, fmt.Errorf("create image: %w", err)
		}
	}
	pins := &pinSet{s: s}
	defer pins.release()
	pins.add(layers...)
	blobs, sizes, err := s.layerBlobs(layers)
	if err != nil {
		return nil, fmt.Errorf("create image %s: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	img, err := s.newImage(name, layers, blobs, cfg, history, pins)
	if err != nil {
		return nil, fmt.Errorf("create image %s: %w", name, err)
	}
	return s.record(img, sizes)
}

// layerBlobs returns the blobs and unpacked sizes of the stored layers;
// blobs is shorter than layers when one of them has no blob.
// Preconditions: the layers are pinned.
func (s *Store) layerBlobs(layers []string) ([]Layer, map[string]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var blobs []Layer
	sizes := map[string]int64{}
	missing := false
	for _, d := range layers {
		if !validDigest(d) {
			return nil, nil, errdefs.New(errdefs.InvalidArgument, "invalid diff ID %q", d)
		}
		if _, err := os.Stat(s.layerDir(d)); err != nil {
			return nil, nil, errdefs.New(errdefs.NotFound, "layer %s not found", d)
		}
		sizes[d] = s.idx.Layers[d]
		b, ok := s.idx.LayerBlobs[d]
		if !ok || !s.hasBlob(b.Digest) {
			missing = true
		}
		blobs = append(blobs, b)
	}
	if missing {
		s.log.Warn("image layer has no blob: the image cannot be pushed or exported")
		return nil, sizes, nil
	}
	return blobs, sizes, nil
}

// newImage makes the config of an image of the layers (diff IDs) and, when
// blobs holds theirs, its manifest; it stores them and returns the image,
// not yet recorded.
func (s *Store) newImage(name string, layers []string, blobs []Layer, cfg Config, history []History, pins *pinSet) (*Image, error) {
	diffIDs := []v1.Hash{}
	for _, d := range layers {
		diffIDs = append(diffIDs, mustHash(d))
	}
	cf := configFile(cfg, diffIDs, history)
	raw, err := configBlob(cf)
	if err != nil {
		return nil, err
	}
	img := &Image{Name: name, ID: digestOf(raw), Layers: slices.Clone(layers), Config: configOf(cf.Config), History: historyOf(cf.History)}
	if len(blobs) == len(layers) {
		img.Blobs = blobs
	}
	if err := s.storeMetadata(img, raw, nil, pins); err != nil {
		return nil, err
	}
	return img, nil
}

// errUnpackStopped stops the writer of a layer stream when the unpacker quits.
var errUnpackStopped = errors.New("unpack stopped")

// storeLayer makes a layer of the tar stream write produces: it unpacks it
// into layers/ and keeps its gzip blob, in one pass over the stream. The
// layer and its blob are pinned in pins.
func (s *Store) storeLayer(ctx context.Context, write func(io.Writer) error, pins *pinSet) (Layer, int64, error) {
	bw, err := s.newBlobWriter()
	if err != nil {
		return Layer{}, 0, err
	}
	defer bw.discard()
	zw := gzip.NewWriter(bw)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := write(pw)
		pw.CloseWithError(err)
		done <- err
	}()
	diffID, size, err := s.unpackLayer(ctx, io.TeeReader(pr, zw), "")
	pr.CloseWithError(errUnpackStopped)
	// The writer's own error is the cause of the unpacker's, if any.
	if werr := <-done; werr != nil && !errors.Is(werr, errUnpackStopped) {
		if err == nil {
			s.unpin([]string{diffID})
		}
		err = werr
	}
	if err != nil {
		return Layer{}, 0, err
	}
	pins.keys = append(pins.keys, diffID) // unpackLayer pinned it
	if err := zw.Close(); err != nil {
		return Layer{}, 0, err
	}
	blob := Layer{DiffID: diffID, Digest: bw.digest(), Size: bw.n, MediaType: mediaTypeLayerGzip}
	pins.add(blob.Digest)
	if err := bw.commit(); err != nil {
		return Layer{}, 0, err
	}
	return blob, size, nil
}
