package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/errdefs"
)

// importImage unpacks the layers of src, keeps their blobs and records it.
func (s *Store) importImage(ctx context.Context, src *source, progress func(Progress)) (*Image, error) {
	raw, err := src.img.RawConfigFile()
	if err != nil {
		return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "read config")
	}
	cf, err := src.img.ConfigFile()
	if err != nil {
		return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "parse config")
	}
	layers, err := src.img.Layers()
	if err != nil {
		return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "read layers")
	}
	if len(layers) != len(cf.RootFS.DiffIDs) {
		return nil, errdefs.New(errdefs.InvalidArgument, "image has %d layers but its config lists %d diff IDs", len(layers), len(cf.RootFS.DiffIDs))
	}
	img := &Image{Name: src.name, ID: digestOf(raw), Config: configOf(cf.Config), History: historyOf(cf.History)}
	for _, d := range cf.RootFS.DiffIDs {
		img.Layers = append(img.Layers, d.String())
	}
	pins := &pinSet{s: s}
	defer pins.release()
	pins.add(append([]string{img.ID}, img.Layers...)...)
	sizes := map[string]int64{}
	for i, l := range layers {
		diffID := img.Layers[i]
		progress(Progress{Phase: "unpacking", Current: int64(i), Total: int64(len(layers)), Detail: diffID})
		blob, size, err := s.importLayer(ctx, diffID, l, pins)
		if err != nil {
			return nil, err
		}
		img.Blobs = append(img.Blobs, blob)
		sizes[diffID] = size
	}
	progress(Progress{Phase: "unpacking", Current: int64(len(layers)), Total: int64(len(layers))})
	if err := s.storeMetadata(img, raw, src.manifest(img.Blobs), pins); err != nil {
		return nil, err
	}
	return s.record(img, sizes)
}

// pinSet is the pins one operation holds, released together.
type pinSet struct {
	s    *Store
	keys []string
}

func (p *pinSet) add(keys ...string) {
	p.s.pin(keys)
	p.keys = append(p.keys, keys...)
}

func (p *pinSet) release() { p.s.unpin(p.keys) }

// importLayer stores the blob of the archive layer l (the archive's own
// compressed bytes; gzip made on the fly when the archive holds a plain
// tar) and unpacks it, checking its content against diffID. A layer already
// stored with a blob is not read again.
func (s *Store) importLayer(ctx context.Context, diffID string, l v1.Layer, pins *pinSet) (Layer, int64, error) {
	if b, size, ok := s.storedLayer(diffID); ok {
		return b, size, nil
	}
	rc, err := l.Compressed()
	if err != nil {
		return Layer{}, 0, errdefs.Wrap(errdefs.InvalidArgument, err, "open layer %s", diffID)
	}
	defer rc.Close()
	bw, err := s.newBlobWriter()
	if err != nil {
		return Layer{}, 0, err
	}
	defer bw.discard()
	magic := &headBytes{}
	if _, err := io.Copy(io.MultiWriter(bw, magic), ctxReader{ctx, rc}); err != nil {
		if ctx.Err() != nil {
			return Layer{}, 0, ctx.Err()
		}
		return Layer{}, 0, corruptLayer(diffID, "", err)
	}
	blob := Layer{DiffID: diffID, Digest: bw.digest(), Size: bw.n, MediaType: compressionOf(magic.b)}
	pins.add(blob.Digest)
	if err := bw.commit(); err != nil {
		return Layer{}, 0, err
	}
	size, err := s.unpackBlob(ctx, blob, nil)
	if err != nil {
		pins.drop(blob.Digest)
		return Layer{}, 0, err
	}
	return blob, size, nil
}

// drop releases the pin on blob and deletes it if nothing else uses it:
// a blob whose content did not match its diff ID.
func (p *pinSet) drop(blob string) {
	var dropped []string
	p.keys = slices.DeleteFunc(p.keys, func(k string) bool {
		if k == blob {
			dropped = append(dropped, k)
		}
		return k == blob
	})
	p.s.unpin(dropped)
	p.s.mu.Lock()
	trash := p.s.collect(nil, []string{blob}, false)
	p.s.mu.Unlock()
	p.s.sweep(trash)
}

// storedLayer returns the blob and unpacked size of diffID when both its
// directory and its blob are stored.
func (s *Store) storedLayer(diffID string) (Layer, int64, bool) {
	s.mu.Lock()
	b, ok := s.idx.LayerBlobs[diffID]
	size := s.idx.Layers[diffID]
	s.mu.Unlock()
	if !ok || !s.hasBlob(b.Digest) {
		return Layer{}, 0, false
	}
	if _, err := os.Stat(s.layerDir(diffID)); err != nil {
		return Layer{}, 0, false
	}
	return b, size, true
}

// verifiedLayer returns the unpacked size of b's layer when both the layer
// and the blob are stored and the store has seen the blob's content match
// the diff ID (it is the layer's blob, or an image's blob for it).
func (s *Store) verifiedLayer(b Layer) (int64, bool) {
	if !s.hasBlob(b.Digest) {
		return 0, false
	}
	if _, err := os.Stat(s.layerDir(b.DiffID)); err != nil {
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if lb, ok := s.idx.LayerBlobs[b.DiffID]; ok && lb.Digest == b.Digest {
		return s.idx.Layers[b.DiffID], true
	}
	for _, img := range s.idx.Images {
		for _, ib := range img.Blobs {
			if ib.DiffID == b.DiffID && ib.Digest == b.Digest {
				return s.idx.Layers[b.DiffID], true
			}
		}
	}
	return 0, false
}

// headBytes keeps the first bytes written to it: a blob's magic number.
type headBytes struct{ b []byte }

func (h *headBytes) Write(p []byte) (int, error) {
	if n := 8 - len(h.b); n > 0 {
		h.b = append(h.b, p[:min(n, len(p))]...)
	}
	return len(p), nil
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// record adds img to the index, moving its name from any image that had it.
// Layers and blobs the name's previous image alone used are deleted. An
// untagged img (Name "") is added unless its ID is recorded already; a
// named one replaces the untagged entry of its ID.
func (s *Store) record(img *Image, sizes map[string]int64) (*Image, error) {
	out, sweep, err := s.recordLocked(img, sizes)
	if err != nil {
		return nil, err
	}
	sweep()
	return out, nil
}

func (s *Store) recordLocked(img *Image, sizes map[string]int64) (*Image, func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img.CreatedAt = time.Now().UTC()
	img.Size = 0
	for _, l := range img.Layers {
		if n, ok := sizes[l]; ok {
			img.Size += n
		} else {
			img.Size += s.idx.Layers[l]
		}
	}
	next := s.idx.clone()
	var replaced *Image
	switch old := next.byName(img.Name); {
	case img.Name == "" && next.hasID(img.ID):
		// Untagged, and recorded already: nothing to add.
	case old != nil:
		o := old.clone()
		replaced = &o
		*old = img.clone()
	default:
		next.Images = append(next.Images, img.clone())
	}
	if img.Name != "" {
		next.dropUntagged(img.ID)
	}
	for l, n := range sizes {
		next.Layers[l] = n
	}
	for _, b := range img.Blobs {
		if _, ok := next.LayerBlobs[b.DiffID]; !ok {
			next.LayerBlobs[b.DiffID] = b
		}
	}
	if err := s.commit(next); err != nil {
		return nil, nil, err
	}
	for _, l := range img.Layers {
		delete(s.held, l)
	}
	s.log.Info("recorded image", "name", img.Name, "id", img.ID, "layers", len(img.Layers), "size", img.Size)
	sweep := func() {}
	if replaced != nil && replaced.ID != img.ID {
		sweep = s.gcImage(*replaced)
	}
	out := img.clone()
	return &out, sweep, nil
}

// unpackBlob unpacks the stored layer blob b into layers/ and returns the
// layer's unpacked size. Its content is checked against b.DiffID; when the
// layer is already unpacked (from another blob) it is only checked.
func (s *Store) unpackBlob(ctx context.Context, b Layer, progress func(Progress)) (int64, error) {
	f, err := os.Open(s.blobPath(b.Digest))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var r io.Reader = f
	if progress != nil {
		m := &meter{progress: progress, phase: "unpacking", detail: b.DiffID, total: b.Size}
		m.start(0)
		defer m.done()
		r = &meteredReader{r: f, m: m}
	}
	rc, err := decompress(r)
	if err != nil {
		return 0, corruptLayer(b.DiffID, "", err)
	}
	defer rc.Close()
	if _, err := os.Stat(s.layerDir(b.DiffID)); err == nil {
		return s.checkLayer(ctx, rc, b.DiffID)
	}
	_, size, err := s.unpackLayer(ctx, rc, b.DiffID)
	return size, err
}

// checkLayer hashes the uncompressed layer r and compares it with diffID.
func (s *Store) checkLayer(ctx context.Context, r io.Reader, diffID string) (int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, ctxReader{ctx, r})
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	got := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if err != nil || got != diffID {
		return 0, corruptLayer(diffID, got, err)
	}
	return n, nil
}

// unpackLayer unpacks the uncompressed layer tar r into a temporary directory,
// checks its digest against want (unless want is ""), and renames it into
// layers/ when complete. It returns the diff ID and the tar's size. A layer
// unpacked without a wanted digest is returned pinned (the caller unpins):
// only then is its diff ID known before it is published.
func (s *Store) unpackLayer(ctx context.Context, r io.Reader, want string) (string, int64, error) {
	tmp, err := os.MkdirTemp(s.tmpDir(), "layer-")
	if err != nil {
		return "", 0, err
	}
	defer s.removeWork(tmp) // a no-op once renamed
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(r, h)}
	unpackErr := unpackTar(ctx, cr, tmp)
	// Hash the whole stream, tar padding included, before judging it.
	_, drainErr := io.Copy(io.Discard, cr)
	got := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if err := ctx.Err(); err != nil {
		return "", 0, err
	}
	if want != "" && (got != want || drainErr != nil) {
		return "", 0, corruptLayer(want, got, errors.Join(drainErr, unpackErr))
	}
	if err := errors.Join(unpackErr, drainErr); err != nil {
		return "", 0, errdefs.Wrap(errdefs.InvalidArgument, err, "unpack layer %s", got)
	}
	if err := syncFS(tmp); err != nil {
		return "", 0, err
	}
	if want == "" {
		s.pin([]string{got})
	}
	if err := s.publishLayer(tmp, got); err != nil {
		if want == "" {
			s.unpin([]string{got})
		}
		return "", 0, err
	}
	return got, cr.n, nil
}

func corruptLayer(want, got string, cause error) error {
	if cause != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, cause, "layer %s is corrupt", want)
	}
	return errdefs.New(errdefs.InvalidArgument, "layer %s is corrupt: its content has digest %s", want, got)
}

// publishLayer renames the complete layer directory tmp into place. When a
// concurrent import published the same layer first, tmp is left to be removed.
func (s *Store) publishLayer(tmp, diffID string) error {
	err := os.Rename(tmp, s.layerDir(diffID))
	if err == nil || errors.Is(err, fs.ErrExist) || errors.Is(err, unix.ENOTEMPTY) {
		return syncDir(s.layersDir())
	}
	return fmt.Errorf("publish layer %s: %w", diffID, err)
}

// syncFS flushes the file system holding dir: one syncfs instead of an
// fsync per file of a layer.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("sync layer: %w", err)
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
