package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/denhq/den/internal/errdefs"
)

// Download retries: a failed attempt is retried at once when it made
// progress, else after a growing pause, up to fetchAttempts in a row.
const (
	fetchAttempts = 3
	fetchBackoff  = 500 * time.Millisecond
	fetchBuffer   = 256 << 10
)

// resumedCorruptError is a digest mismatch of a download that resumed a
// partial file: the old part may be what is wrong, so it is fetched anew.
type resumedCorruptError struct{ err error }

func (e *resumedCorruptError) Error() string { return e.err.Error() }
func (e *resumedCorruptError) Unwrap() error { return e.err }

// download fetches the blob b from the registry into blobs/. The bytes go
// to partial/<hex> first, resuming what an earlier pull left there; the
// blob is moved into blobs/ only once its digest checks out.
func (p *puller) download(ctx context.Context, b Layer) error {
	unlock, err := p.s.downloads.lock(ctx, hexOf(b.Digest))
	if err != nil {
		return err
	}
	defer unlock()
	if p.s.hasBlob(b.Digest) {
		return nil // a concurrent pull fetched it
	}
	m := &meter{progress: p.progress, phase: "downloading", detail: b.Digest, total: b.Size}
	failures := 0
	for restarted := false; ; {
		progressed, err := p.fetch(ctx, b, m)
		var resumedCorrupt *resumedCorruptError
		switch {
		case err == nil:
			m.done()
			return nil
		case errors.As(err, &resumedCorrupt) && !restarted:
			restarted = true // fetch removed the partial file
			continue
		case resumedCorrupt != nil:
			return resumedCorrupt.err
		case ctx.Err() != nil:
			return ctx.Err()
		case !retriable(err):
			return err
		}
		if progressed {
			failures = 0
		}
		if failures++; failures >= fetchAttempts {
			return err
		}
		p.s.log.Warn("retrying blob download", "blob", b.Digest, "err", err)
		if !progressed {
			select {
			case <-time.After(fetchBackoff * time.Duration(failures)):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

func hexOf(digest string) string { return digest[len("sha256:"):] }

// fetch makes one attempt at completing the partial download of b. It
// reports whether the partial download grew.
func (p *puller) fetch(ctx context.Context, b Layer, m *meter) (progressed bool, err error) {
	partial := filepath.Join(p.s.partialDir(), hexOf(b.Digest))
	f, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := sha256.New()
	have, err := io.Copy(h, f) // the partial content is hashed, never trusted
	if err != nil {
		return false, err
	}
	if have > b.Size {
		if have, err = restart(f, h); err != nil {
			return false, err
		}
	}
	resumed, before := have > 0, have
	m.start(have)
	if have < b.Size {
		n, resumedOK, err := p.receive(ctx, b, f, h, have, m)
		if !resumedOK {
			resumed, have = false, 0
		}
		// Progress is a longer partial file: a registry that ignores the
		// range and drops the connection gets no further each time.
		progressed = have+n > before
		if err != nil {
			return progressed, err
		}
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != b.Digest {
		os.Remove(partial)
		err := errdefs.New(errdefs.InvalidArgument, "blob %s is corrupt: its content has digest %s", b.Digest, got)
		if resumed {
			return progressed, &resumedCorruptError{err}
		}
		return progressed, err
	}
	if err := f.Sync(); err != nil {
		return progressed, err
	}
	return progressed, p.s.publishBlob(partial, b.Digest)
}

// restart empties the partial file f and its hash.
func restart(f *os.File, h hash.Hash) (int64, error) {
	h.Reset()
	if err := f.Truncate(0); err != nil {
		return 0, err
	}
	_, err := f.Seek(0, io.SeekStart)
	return 0, err
}

// receive requests b from offset have (the size of the partial file f,
// positioned at its end) and appends the body to f and h. It returns the
// bytes received, and false when the registry ignored the range request and
// f was started over.
func (p *puller) receive(ctx context.Context, b Layer, f *os.File, h hash.Hash, have int64, m *meter) (int64, bool, error) {
	body, ranged, err := p.get(ctx, b, have)
	if err != nil {
		return 0, true, err
	}
	defer body.Close()
	startedOver := have > 0 && !ranged
	if startedOver {
		if have, err = restart(f, h); err != nil {
			return 0, false, err
		}
		m.start(0)
	}
	want := b.Size - have
	// The body is read until ctx ends, not until the transport notices:
	// on loopback the rest of a blob can arrive before it does.
	n, err := copyBuffer(io.MultiWriter(f, h), &meteredReader{r: ctxReader{ctx: ctx, r: io.LimitReader(body, want)}, m: m})
	if err == nil && n < want {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return n, !startedOver, fmt.Errorf("download blob %s: %w", b.Digest, err)
	}
	return n, !startedOver, nil
}

func copyBuffer(w io.Writer, r io.Reader) (int64, error) {
	return io.CopyBuffer(w, r, make([]byte, fetchBuffer))
}

// get requests the blob b, from byte offset on when offset > 0. ranged
// says the registry honoured the range; otherwise body is the whole blob.
func (p *puller) get(ctx context.Context, b Layer, offset int64) (body io.ReadCloser, ranged bool, err error) {
	repo := p.ref.Context()
	u := url.URL{Scheme: repo.Scheme(), Host: repo.RegistryStr(), Path: "/v2/" + repo.RepositoryStr() + "/blobs/" + b.Digest}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, false, err
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", offset, b.Size-1))
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, false, err
	}
	if offset > 0 && resp.StatusCode == http.StatusPartialContent && rangeStart(resp) == offset {
		return resp.Body, true, nil
	}
	if offset > 0 && (resp.StatusCode == http.StatusPartialContent || resp.StatusCode == http.StatusRequestedRangeNotSatisfiable) {
		resp.Body.Close()
		return p.get(ctx, b, 0) // a range we did not ask for: start over
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		resp.Body.Close()
		return nil, false, err
	}
	return resp.Body, false, nil
}

// rangeStart is the first byte of a 206 response's Content-Range, or -1.
func rangeStart(resp *http.Response) int64 {
	var start, end, size int64
	if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-%d/%d", &start, &end, &size); err != nil {
		return -1
	}
	return start
}

// retriable reports whether a failed download attempt may succeed when
// tried again: the connection dropped, or the registry is overloaded.
func retriable(err error) bool {
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.StatusCode >= 500 || terr.StatusCode == http.StatusTooManyRequests
	}
	if errdefs.KindOf(err) != errdefs.Internal {
		return false
	}
	var nerr net.Error
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &nerr) || errors.Is(err, io.EOF)
}
