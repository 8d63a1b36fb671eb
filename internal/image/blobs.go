package image

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/denhq/den/internal/errdefs"
)

// Media types of the blobs den writes itself.
const (
	mediaTypeLayerGzip = string(types.OCILayer)
	mediaTypeLayerZstd = string(types.OCILayerZStd)
	mediaTypeLayerTar  = string(types.OCIUncompressedLayer)
)

// maxMetadataBlob bounds the manifests and configs read into memory.
const maxMetadataBlob = 16 << 20

func (s *Store) blobsDir() string   { return filepath.Join(s.dir, "blobs", "sha256") }
func (s *Store) partialDir() string { return filepath.Join(s.dir, "partial") }

// blobPath is the file of the blob digest ("sha256:<hex>").
func (s *Store) blobPath(digest string) string {
	return filepath.Join(s.blobsDir(), strings.TrimPrefix(digest, "sha256:"))
}

func (s *Store) hasBlob(digest string) bool {
	fi, err := os.Stat(s.blobPath(digest))
	return err == nil && fi.Mode().IsRegular()
}

// validDigest reports whether d is "sha256:" and 64 lowercase hex digits.
func validDigest(d string) bool {
	h, ok := strings.CutPrefix(d, "sha256:")
	return ok && len(h) == 64 && strings.Trim(h, "0123456789abcdef") == ""
}

// readBlob returns a small blob (a config or manifest), checking its digest.
func (s *Store) readBlob(digest string) ([]byte, error) {
	f, err := os.Open(s.blobPath(digest))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errdefs.New(errdefs.NotFound, "blob %s not found", digest)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxMetadataBlob+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxMetadataBlob {
		return nil, errdefs.New(errdefs.InvalidArgument, "blob %s is larger than %d bytes", digest, maxMetadataBlob)
	}
	if got := digestOf(data); got != digest {
		return nil, errdefs.New(errdefs.InvalidArgument, "blob %s is corrupt: its content has digest %s", digest, got)
	}
	return data, nil
}

// writeBlob stores data as a blob and returns its digest. A blob that is
// already stored is left alone.
func (s *Store) writeBlob(data []byte) (string, error) {
	bw, err := s.newBlobWriter()
	if err != nil {
		return "", err
	}
	defer bw.discard()
	if _, err := bw.Write(data); err != nil {
		return "", err
	}
	return bw.digest(), bw.commit()
}

// blobWriter writes a blob to a temporary file under tmp/, hashing it, and
// publishes it under its digest.
type blobWriter struct {
	s *Store
	f *os.File
	h hash.Hash
	n int64
}

func (s *Store) newBlobWriter() (*blobWriter, error) {
	f, err := os.CreateTemp(s.tmpDir(), "blob-")
	if err != nil {
		return nil, err
	}
	return &blobWriter{s: s, f: f, h: sha256.New()}, nil
}

func (w *blobWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

func (w *blobWriter) digest() string { return "sha256:" + hex.EncodeToString(w.h.Sum(nil)) }

// commit syncs the blob and renames it into blobs/.
func (w *blobWriter) commit() error {
	if err := w.f.Chmod(0o644); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	if err := w.f.Close(); err != nil {
		return err
	}
	return w.s.publishBlob(w.f.Name(), w.digest())
}

// discard removes the temporary file; a no-op after commit.
func (w *blobWriter) discard() {
	w.f.Close()
	os.Remove(w.f.Name())
}

// publishBlob renames the complete, synced file tmp to the blob digest.
func (s *Store) publishBlob(tmp, digest string) error {
	if err := os.Rename(tmp, s.blobPath(digest)); err != nil {
		return fmt.Errorf("publish blob %s: %w", digest, err)
	}
	return syncDir(s.blobsDir())
}

// blobSize returns the size of the stored blob digest.
func (s *Store) blobSize(digest string) (int64, error) {
	fi, err := os.Stat(s.blobPath(digest))
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// compressionOf tells a layer blob's compression from its first bytes and
// returns the media type den records for it.
func compressionOf(magic []byte) string {
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return mediaTypeLayerGzip
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return mediaTypeLayerZstd
	default:
		return mediaTypeLayerTar
	}
}

// decompress returns the uncompressed content of a layer blob read from r:
// gzip, zstd or a plain tar, told by its first bytes. Closing it does not
// close r.
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	switch compressionOf(magic) {
	case mediaTypeLayerGzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		return zr, nil
	case mediaTypeLayerZstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	default:
		return io.NopCloser(br), nil
	}
}

// openLayerBlob opens the stored blob digest and returns its uncompressed content.
func (s *Store) openLayerBlob(digest string) (io.ReadCloser, error) {
	f, err := os.Open(s.blobPath(digest))
	if err != nil {
		return nil, err
	}
	zr, err := decompress(f)
	if err != nil {
		f.Close()
		return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "layer blob %s", digest)
	}
	return &stackedCloser{Reader: zr, closers: []io.Closer{zr, f}}, nil
}

// stackedCloser closes each of closers in order.
type stackedCloser struct {
	io.Reader
	closers []io.Closer
}

func (c *stackedCloser) Close() error {
	var errs []error
	for _, cl := range c.closers {
		errs = append(errs, cl.Close())
	}
	return errors.Join(errs...)
}
