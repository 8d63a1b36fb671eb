// Package dentest provides a fake den server for tests of code that uses the
// den SDK or CLI. It implements the /v1 REST routes in memory (images.go
// describes its registry and builds) and mounts a
// caller-supplied envd handler (for example a real guest agent) under every
// sandbox's /v1/sandboxes/{id}/envd/ path, like the real server's proxy.
package dentest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/denhq/den/api/rest"
)

// Config configures a fake server.
type Config struct {
	// APIKey, when set, is required in the X-API-Key header.
	APIKey string
	// Envd serves the guest protocol of every sandbox; nil answers 502.
	Envd http.Handler
	// Images are preloaded; nil means one image named rest.DefaultImage.
	Images []string
	// RegistryError, when set, is asked before each pull and push with the
	// registry reference; the error it returns fails the operation, in the
	// stream, as a registry failure does on the real server.
	RegistryError func(ref string) *rest.Error
}

// Server is a running fake den server. Its methods are safe for
// concurrent use.
type Server struct {
	// URL is the base URL of the server.
	URL string
	// APIKey is the key the server requires ("" = none).
	APIKey string

	cfg  Config
	http *httptest.Server

	mu        sync.Mutex
	seq       int
	sandboxes map[string]*rest.Sandbox // by ID
	order     []string                 // IDs in creation order
	images    map[string]*rest.Image   // by name
	deleted   []string                 // IDs in deletion order
	registry  map[string]*rest.Image   // the fake registry, by reference
	builds    []Build
	snapshots []*rest.Snapshot // in creation order
}

// NewServer starts a fake server; Close stops it.
func NewServer(cfg Config) *Server {
	s := &Server{cfg: cfg, APIKey: cfg.APIKey, sandboxes: map[string]*rest.Sandbox{}, images: map[string]*rest.Image{},
		registry: map[string]*rest.Image{}}
	names := cfg.Images
	if names == nil {
		names = []string{rest.DefaultImage}
	}
	for _, n := range names {
		s.images[n] = &rest.Image{Name: n, ID: "sha256:" + n, CreatedAt: time.Now().UTC()}
	}
	s.http = httptest.NewServer(s.routes())
	s.URL = s.http.URL
	return s
}

// Close stops the server and waits for its requests to finish.
func (s *Server) Close() { s.http.Close() }

// Deleted returns the IDs of the deleted sandboxes, in order.
func (s *Server) Deleted() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.deleted...)
}

// Sandboxes returns the IDs of the live sandboxes, in creation order.
func (s *Server) Sandboxes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.order...)
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/sandboxes", s.create)
	mux.HandleFunc("GET /v1/sandboxes", s.list)
	mux.HandleFunc("GET /v1/sandboxes/{id}", s.get)
	mux.HandleFunc("DELETE /v1/sandboxes/{id}", s.delete)
	mux.HandleFunc("POST /v1/sandboxes/{id}/timeout", s.setTimeout)
	mux.HandleFunc("POST /v1/sandboxes/{id}/suspend", s.suspend)
	mux.HandleFunc("POST /v1/sandboxes/{id}/resume", s.resume)
	mux.HandleFunc("POST /v1/sandboxes/{id}/fork", s.fork)
	mux.HandleFunc("/v1/sandboxes/{id}/envd/", s.proxy)
	mux.HandleFunc("POST /v1/snapshots", s.createSnapshot)
	mux.HandleFunc("GET /v1/snapshots", s.listSnapshots)
	mux.HandleFunc("GET /v1/snapshots/{id}", s.getSnapshot)
	mux.HandleFunc("DELETE /v1/snapshots/{id}", s.deleteSnapshot)
	mux.HandleFunc("GET /v1/images", s.listImages)
	mux.HandleFunc("POST /v1/images", s.importImage)
	mux.HandleFunc("GET /v1/images/{ref}", s.getImage)
	mux.HandleFunc("DELETE /v1/images/{ref}", s.removeImage)
	mux.HandleFunc("POST /v1/images/{ref}/tag", s.tag)
	mux.HandleFunc("GET /v1/images/{ref}/export", s.export)
	mux.HandleFunc("POST /v1/images/pull", s.pull)
	mux.HandleFunc("POST /v1/images/push", s.push)
	mux.HandleFunc("POST /v1/images/build", s.build)
	mux.HandleFunc("POST /v1/images/prune", s.prune)
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, rest.Info{Version: "dentest", Runtimes: []string{"fake"}, Node: "fake"})
	})
	return s.auth(mux)
}

func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.APIKey != "" && r.Header.Get("X-API-Key") != s.APIKey {
			writeError(w, http.StatusUnauthorized, "unauthenticated", "missing or wrong API key")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, format string, args ...any) {
	writeJSON(w, status, rest.Error{Code: code, Message: fmt.Sprintf(format, args...)})
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	var req rest.CreateSandboxRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", "bad JSON body: %v", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.Snapshot != "" {
		s.createFromSnapshot(w, req)
		return
	}
	req.ApplyDefaults()
	if _, ok := s.images[req.Image]; !ok {
		writeError(w, http.StatusNotFound, "not_found", "image %q not found", req.Image)
		return
	}
	if req.Name != "" && s.lookup(req.Name) != nil {
		writeError(w, http.StatusConflict, "already_exists", "sandbox name %q is taken", req.Name)
		return
	}
	s.seq++
	now := time.Now().UTC()
	sb := &rest.Sandbox{
		ID: fmt.Sprintf("sb-%04d", s.seq), Name: req.Name, Image: req.Image,
		State: rest.StateRunning, Runtime: "fake", Node: "fake", CPUs: req.CPUs,
		MemoryMB: req.MemoryMB, DiskMB: req.DiskMB, Metadata: req.Metadata,
		Timeout: *req.Timeout, CreatedAt: now, StartedAt: &now,
	}
	if sb.Timeout > 0 {
		sb.TimeoutAction = req.TimeoutAction
	}
	if req.IdleTimeout > 0 {
		sb.IdleTimeout, sb.IdleAction = req.IdleTimeout, req.IdleAction
	}
	s.sandboxes[sb.ID] = sb
	s.order = append(s.order, sb.ID)
	writeJSON(w, http.StatusCreated, sb)
}

// lookup finds a sandbox by ID or name. Preconditions: s.mu is held.
func (s *Server) lookup(idOrName string) *rest.Sandbox {
	if sb, ok := s.sandboxes[idOrName]; ok {
		return sb
	}
	for _, sb := range s.sandboxes {
		if sb.Name != "" && sb.Name == idOrName {
			return sb
		}
	}
	return nil
}

// find returns a copy of the sandbox named by the {id} path value, or
// answers 404 and returns nil.
func (s *Server) find(w http.ResponseWriter, r *http.Request) *rest.Sandbox {
	s.mu.Lock()
	defer s.mu.Unlock()
	sb := s.lookup(r.PathValue("id"))
	if sb == nil {
		writeError(w, http.StatusNotFound, "not_found", "sandbox %s not found", r.PathValue("id"))
		return nil
	}
	c := *sb
	return &c
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	if sb := s.find(w, r); sb != nil {
		writeJSON(w, http.StatusOK, sb)
	}
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	sb := s.find(w, r)
	if sb == nil {
		return
	}
	s.mu.Lock()
	delete(s.sandboxes, sb.ID)
	for i, id := range s.order {
		if id == sb.ID {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	s.deleted = append(s.deleted, sb.ID)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) setTimeout(w http.ResponseWriter, r *http.Request) {
	var req rest.SetTimeoutRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", "bad JSON body: %v", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sb := s.lookup(r.PathValue("id"))
	if sb == nil {
		writeError(w, http.StatusNotFound, "not_found", "sandbox %s not found", r.PathValue("id"))
		return
	}
	sb.Timeout = req.Timeout
	writeJSON(w, http.StatusOK, sb)
}

// suspend marks a running sandbox suspended, with a made-up snapshot size
// and its full timeout left.
func (s *Server) suspend(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sb := s.lookup(r.PathValue("id"))
	switch {
	case sb == nil:
		writeError(w, http.StatusNotFound, "not_found", "sandbox %s not found", r.PathValue("id"))
		return
	case sb.State != rest.StateRunning:
		writeError(w, http.StatusConflict, "failed_precondition", "sandbox %s is %s: only a running sandbox can be suspended", sb.ID, sb.State)
		return
	}
	now := time.Now().UTC()
	sb.State, sb.SuspendedAt, sb.ExpiresAt, sb.SnapshotBytes, sb.TimeoutLeft = rest.StateSuspended, &now, nil, 4096, sb.Timeout
	writeJSON(w, http.StatusOK, sb)
}

func (s *Server) resume(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sb := s.lookup(r.PathValue("id"))
	switch {
	case sb == nil:
		writeError(w, http.StatusNotFound, "not_found", "sandbox %s not found", r.PathValue("id"))
		return
	case sb.State != rest.StateSuspended:
		writeError(w, http.StatusConflict, "failed_precondition", "sandbox %s is %s: only a suspended sandbox can be resumed", sb.ID, sb.State)
		return
	}
	wake(sb)
	writeJSON(w, http.StatusOK, sb)
}

// wake makes a suspended sandbox running again. Preconditions: s.mu is held.
func wake(sb *rest.Sandbox) {
	sb.State, sb.SuspendedAt, sb.SnapshotBytes, sb.TimeoutLeft = rest.StateRunning, nil, 0, 0
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	want := map[string]string{}
	for _, kv := range q["metadata"] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			writeError(w, http.StatusBadRequest, "invalid_argument", "metadata filter %q is invalid: use key=value", kv)
			return
		}
		want[k] = v
	}
	limit, start := 100, 0
	if l := q.Get("limit"); l != "" {
		limit, _ = strconv.Atoi(l)
	}
	if t := q.Get("page_token"); t != "" {
		start, _ = strconv.Atoi(t)
	}
	writeJSON(w, http.StatusOK, s.page(q.Get("state"), want, start, limit))
}

func (s *Server) page(state string, want map[string]string, start, limit int) rest.SandboxList {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := rest.SandboxList{Sandboxes: []rest.Sandbox{}}
	for i := start; i < len(s.order); i++ {
		sb := s.sandboxes[s.order[i]]
		if (state != "" && sb.State != state) || !matches(sb.Metadata, want) {
			continue
		}
		if len(out.Sandboxes) == limit {
			out.NextPageToken = strconv.Itoa(i)
			break
		}
		out.Sandboxes = append(out.Sandboxes, *sb)
	}
	return out
}

func matches(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// proxy serves the guest protocol of a sandbox, resuming a suspended one
// first as the real server does.
func (s *Server) proxy(w http.ResponseWriter, r *http.Request) {
	sb := s.find(w, r)
	if sb == nil {
		return
	}
	if sb.State == rest.StateSuspended {
		s.mu.Lock()
		if live := s.lookup(sb.ID); live != nil && live.State == rest.StateSuspended {
			wake(live)
		}
		s.mu.Unlock()
	}
	if s.cfg.Envd == nil {
		writeError(w, http.StatusBadGateway, "unavailable", "no guest agent")
		return
	}
	r.Header.Del("X-API-Key")
	prefix := "/v1/sandboxes/" + r.PathValue("id") + rest.GuestPathPrefix
	http.StripPrefix(prefix, s.cfg.Envd).ServeHTTP(w, r)
}

func (s *Server) listImages(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := rest.ImageList{Images: []rest.Image{}}
	for _, img := range s.images {
		l.Images = append(l.Images, *img)
	}
	sort.Slice(l.Images, func(i, j int) bool { return l.Images[i].Name < l.Images[j].Name })
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) importImage(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if name == "" {
		writeError(w, http.StatusBadRequest, "invalid_argument", "name is required")
		return
	}
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", "read archive: %v", err)
		return
	}
	img := &rest.Image{Name: name, ID: "sha256:" + hex.EncodeToString(h.Sum(nil)), Size: n, CreatedAt: time.Now().UTC()}
	s.mu.Lock()
	s.images[name] = img
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, img)
}

func (s *Server) image(w http.ResponseWriter, r *http.Request) *rest.Image {
	ref := r.PathValue("ref")
	if img := s.findImage(ref); img != nil {
		return img
	}
	writeError(w, http.StatusNotFound, "not_found", "image %s not found", ref)
	return nil
}

func (s *Server) getImage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if img := s.image(w, r); img != nil {
		layers := []rest.ImageLayer{{DiffID: fakeLayer(img), Digest: fakeLayer(img), Size: img.Size}}
		writeJSON(w, http.StatusOK, rest.ImageDetails{Image: *img, Layers: layers})
	}
}

func (s *Server) removeImage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if img := s.image(w, r); img != nil {
		delete(s.images, img.Name)
		w.WriteHeader(http.StatusNoContent)
	}
}
