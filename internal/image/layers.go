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
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/errdefs"
)

// importImage unpacks the layers of src and records it.
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
	img := &Image{Name: src.name, ID: digestOf(raw), Config: configOf(cf.Config)}
	for _, d := range cf.RootFS.DiffIDs {
		img.Layers = append(img.Layers, d.String())
	}
	s.pin(img.Layers)
	defer s.unpin(img.Layers)
	sizes := map[string]int64{}
	for i, l := range layers {
		diffID := img.Layers[i]
		progress(Progress{Phase: "unpacking", Current: int64(i), Total: int64(len(layers)), Detail: diffID})
		size, err := s.ensureLayer(ctx, diffID, l.Uncompressed)
		if err != nil {
			return nil, err
		}
		sizes[diffID] = size
	}
	progress(Progress{Phase: "unpacking", Current: int64(len(layers)), Total: int64(len(layers))})
	return s.record(img, sizes)
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func configOf(c v1.Config) Config {
	return Config{Env: c.Env, WorkingDir: c.WorkingDir, User: c.User, Entrypoint: c.Entrypoint, Cmd: c.Cmd}
}

func (s *Store) pin(layers []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range layers {
		s.pinned[l]++
	}
}

func (s *Store) unpin(layers []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range layers {
		if s.pinned[l]--; s.pinned[l] <= 0 {
			delete(s.pinned, l)
		}
	}
}

// record adds img to the index, moving its name from any image that had it.
// Layers the name's previous image alone used are deleted.
func (s *Store) record(img *Image, sizes map[string]int64) (*Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img.CreatedAt = time.Now().UTC()
	for _, l := range img.Layers {
		if n, ok := sizes[l]; ok {
			img.Size += n
		} else {
			img.Size += s.idx.Layers[l]
		}
	}
	next := s.idx.clone()
	var replaced *Image
	if old := next.byName(img.Name); old != nil {
		o := old.clone()
		replaced = &o
		*old = img.clone()
	} else {
		next.Images = append(next.Images, img.clone())
	}
	for l, n := range sizes {
		next.Layers[l] = n
	}
	if err := s.commit(next); err != nil {
		return nil, err
	}
	s.log.Info("recorded image", "name", img.Name, "id", img.ID, "layers", len(img.Layers), "size", img.Size)
	if replaced != nil && replaced.ID != img.ID {
		s.gcLayers(replaced.Layers)
	}
	out := img.clone()
	return &out, nil
}

// ensureLayer makes sure the layer diffID is unpacked, reading it from open
// when it is not, and returns its unpacked size.
func (s *Store) ensureLayer(ctx context.Context, diffID string, open func() (io.ReadCloser, error)) (int64, error) {
	if _, err := os.Stat(s.layerDir(diffID)); err == nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.idx.Layers[diffID], nil
	}
	rc, err := open()
	if err != nil {
		return 0, errdefs.Wrap(errdefs.InvalidArgument, err, "open layer %s", diffID)
	}
	defer rc.Close()
	_, size, err := s.unpackLayer(ctx, rc, diffID)
	return size, err
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
