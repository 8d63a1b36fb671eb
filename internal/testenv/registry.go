package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// RegistryOptions configures Registry. The zero value is an open registry.
type RegistryOptions struct {
	// Username and Password, when Username is set, are the only credentials
	// the registry accepts: as HTTP basic auth, or at its token endpoint
	// when Token is set.
	Username, Password string
	// Token makes the registry demand a bearer token, as Docker Hub does:
	// requests without one get a 401 with a `WWW-Authenticate: Bearer
	// realm="http://HOST/token"` challenge, and the token endpoint hands
	// one out (after checking the basic credentials when Username is set).
	Token bool
	// Blob, when set, is asked how to serve each blob download
	// (GET /v2/<repo>/blobs/<digest>), to simulate faults.
	Blob func(BlobRequest) BlobFault
	// Served, when set, is told the body bytes each blob download sent.
	Served func(digest string, n int64)
	// BlobDir, when set, keeps the registry's blobs in files under it
	// rather than in memory, for large images.
	BlobDir string
}

// BlobRequest is one blob download a Registry is about to serve.
type BlobRequest struct {
	// Digest is the blob's digest ("sha256:...").
	Digest string
	// Range is the request's Range header; "" for the whole blob.
	Range string
}

// BlobFault changes how a Registry serves one blob download. The zero
// value serves it faithfully.
type BlobFault struct {
	// Corrupt flips one byte in the middle of the body.
	Corrupt bool
	// DropAfter, when positive, cuts the connection after that many body
	// bytes (the client sees an unexpected EOF).
	DropAfter int64
	// IgnoreRange serves the whole blob with 200 even when the request asks
	// for a range, as some registries and CDNs do.
	IgnoreRange bool
}

// Registry starts an OCI registry (go-containerregistry's pkg/registry,
// in memory) on a loopback port over plain HTTP for the rest of the test
// and returns its host ("127.0.0.1:PORT"). Clients reach it without an
// insecure flag: loopback registries default to HTTP.
func Registry(t testing.TB, opts RegistryOptions) (host string) {
	t.Helper()
	token := make([]byte, 16)
	rand.Read(token)
	regOpts := []registry.Option{registry.Logger(log.New(io.Discard, "", 0))}
	if opts.BlobDir != "" {
		regOpts = append(regOpts, registry.WithBlobHandler(registry.NewDiskBlobHandler(opts.BlobDir)))
	}
	h := &testRegistry{opts: opts, reg: registry.New(regOpts...), token: hex.EncodeToString(token)}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// testRegistry wraps the registry handler with authentication and faults.
type testRegistry struct {
	opts  RegistryOptions
	reg   http.Handler
	token string
}

const registryRealm = "den-test-registry"

func (h *testRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" && h.opts.Token {
		h.serveToken(w, r)
		return
	}
	if !h.authorized(w, r) {
		return
	}
	if digest, ok := blobDownload(r); ok && (h.opts.Blob != nil || h.opts.Served != nil) {
		h.serveBlob(w, r, digest)
		return
	}
	h.reg.ServeHTTP(w, r)
}

// authorized checks r's credentials, answering a 401 challenge when they
// are missing or wrong.
func (h *testRegistry) authorized(w http.ResponseWriter, r *http.Request) bool {
	switch {
	case h.opts.Token:
		if r.Header.Get("Authorization") == "Bearer "+h.token {
			return true
		}
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service=%q`, r.Host, registryRealm))
	case h.opts.Username != "":
		if h.basicOK(r) {
			return true
		}
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Basic realm=%q`, registryRealm))
	default:
		return true
	}
	writeRegistryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
	return false
}

func (h *testRegistry) basicOK(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	return ok && user == h.opts.Username && pass == h.opts.Password
}

// serveToken is the token endpoint of the bearer flow.
func (h *testRegistry) serveToken(w http.ResponseWriter, r *http.Request) {
	if h.opts.Username != "" && !h.basicOK(r) {
		writeRegistryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "incorrect username or password")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"token": h.token, "access_token": h.token, "expires_in": 3600})
}

func writeRegistryError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

// blobDownload returns the digest of a GET /v2/<repo>/blobs/<digest>.
func blobDownload(r *http.Request) (string, bool) {
	if r.Method != http.MethodGet {
		return "", false
	}
	parts := strings.Split(r.URL.Path, "/")
	n := len(parts)
	if n < 5 || parts[1] != "v2" || parts[n-2] != "blobs" || !strings.HasPrefix(parts[n-1], "sha256:") {
		return "", false
	}
	return parts[n-1], true
}

func (h *testRegistry) serveBlob(w http.ResponseWriter, r *http.Request, digest string) {
	var fault BlobFault
	if h.opts.Blob != nil {
		fault = h.opts.Blob(BlobRequest{Digest: digest, Range: r.Header.Get("Range")})
	}
	if fault.IgnoreRange {
		r.Header.Del("Range")
	}
	fw := &faultWriter{ResponseWriter: w, fault: fault}
	if h.opts.Served != nil {
		defer func() { h.opts.Served(digest, fw.written()) }()
	}
	h.reg.ServeHTTP(fw, r)
}

// faultWriter applies a BlobFault to a response body.
type faultWriter struct {
	http.ResponseWriter
	fault BlobFault

	mu   sync.Mutex
	n    int64 // body bytes written
	size int64 // Content-Length, -1 when unknown
}

func (f *faultWriter) WriteHeader(code int) {
	f.size = -1
	if n, err := strconv.ParseInt(f.Header().Get("Content-Length"), 10, 64); err == nil {
		f.size = n
	}
	f.ResponseWriter.WriteHeader(code)
}

func (f *faultWriter) written() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *faultWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	start := f.n
	f.mu.Unlock()
	if mid := f.size / 2; f.fault.Corrupt && f.size > 0 && start <= mid && mid < start+int64(len(p)) {
		p = append([]byte(nil), p...)
		p[mid-start] ^= 0xff
	}
	drop := f.fault.DropAfter > 0 && start+int64(len(p)) > f.fault.DropAfter
	if drop {
		p = p[:max(f.fault.DropAfter-start, 0)]
	}
	n, err := f.ResponseWriter.Write(p)
	f.mu.Lock()
	f.n += int64(n)
	f.mu.Unlock()
	if drop {
		if fl, ok := f.ResponseWriter.(http.Flusher); ok {
			fl.Flush()
		}
		panic(http.ErrAbortHandler) // net/http closes the connection quietly
	}
	return n, err
}
