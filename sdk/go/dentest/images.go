package dentest

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/denhq/den/api/rest"
)

// The fake server's image routes beyond list, get, import and remove. Its
// registry is a map in memory: push copies an image into it, pull copies
// one out. A build records the context it received (see Builds) and
// "runs" the Dockerfile by logging one line per instruction; an
// instruction "RUN false" fails the build.

// Build is a build the fake server received.
type Build struct {
	// Files are the names of the context tar's entries, in order.
	Files []string
	// Dockerfile is the Dockerfile's path and Content its content.
	Dockerfile, Content string
	Tags                []string
	BuildArgs           []string
	Target              string
	NoCache, Pull       bool
}

// Builds returns the builds received so far, in order.
func (s *Server) Builds() []Build {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.builds)
}

// Registry returns the references in the fake registry, sorted.
func (s *Server) Registry() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var refs []string
	for r := range s.registry {
		refs = append(refs, r)
	}
	slices.Sort(refs)
	return refs
}

// stream writes an NDJSON answer line by line.
type stream struct {
	w       http.ResponseWriter
	started bool
}

func (st *stream) send(ev rest.ImageEvent) {
	if !st.started {
		st.started = true
		st.w.Header().Set("Content-Type", rest.NDJSONContentType)
		st.w.WriteHeader(http.StatusOK)
	}
	b, _ := json.Marshal(ev)
	st.w.Write(append(b, '\n'))
	if f, ok := st.w.(http.Flusher); ok {
		f.Flush()
	}
}

func (st *stream) fail(e *rest.Error) { st.send(rest.ImageEvent{Error: e}) }

func (st *stream) progress(phase, detail string, cur, total int64) {
	st.send(rest.ImageEvent{Progress: &rest.ImageProgress{Phase: phase, Detail: detail, Current: cur, Total: total}})
}

// fakeLayer is the one layer digest every fake image reports.
func fakeLayer(img *rest.Image) string { return img.ID }

func (s *Server) pull(w http.ResponseWriter, r *http.Request) {
	var req rest.PullImageRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", "invalid JSON body: %v", err)
		return
	}
	if req.Ref == "" {
		writeError(w, http.StatusBadRequest, "invalid_argument", "ref is required")
		return
	}
	st := &stream{w: w}
	st.progress(rest.PhaseResolving, req.Ref, 0, 0)
	if e := s.registryError(req.Ref); e != nil {
		st.fail(e)
		return
	}
	s.mu.Lock()
	src, ok := s.registry[req.Ref]
	s.mu.Unlock()
	if !ok {
		st.fail(&rest.Error{Code: "not_found", Message: fmt.Sprintf("pull image %s: MANIFEST_UNKNOWN: manifest unknown", req.Ref)})
		return
	}
	layer := fakeLayer(src)
	st.progress(rest.PhaseDownloading, layer, 0, src.Size)
	st.progress(rest.PhaseDownloading, layer, src.Size, src.Size)
	st.progress(rest.PhaseUnpacking, layer, src.Size, src.Size)
	img := *src
	img.Name = req.Ref
	s.mu.Lock()
	s.images[img.Name] = &img
	s.mu.Unlock()
	st.send(rest.ImageEvent{Image: &img})
}

func (s *Server) push(w http.ResponseWriter, r *http.Request) {
	var req rest.PushImageRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", "invalid JSON body: %v", err)
		return
	}
	if req.Image == "" || req.Dest == "" {
		writeError(w, http.StatusBadRequest, "invalid_argument", "image and dest are required")
		return
	}
	s.mu.Lock()
	img := s.findImage(req.Image)
	s.mu.Unlock()
	if img == nil {
		writeError(w, http.StatusNotFound, "not_found", "get image: image %q not found", req.Image)
		return
	}
	st := &stream{w: w}
	layer := fakeLayer(img)
	st.progress(rest.PhaseUploading, layer, 0, img.Size)
	if e := s.registryError(req.Dest); e != nil {
		st.fail(e)
		return
	}
	st.progress(rest.PhaseUploading, layer, img.Size, img.Size)
	c := *img
	c.Digest = "sha256:" + hexSum(img.ID+req.Dest)
	s.mu.Lock()
	s.registry[req.Dest] = &c
	s.mu.Unlock()
	st.send(rest.ImageEvent{Digest: c.Digest})
}

func (s *Server) registryError(ref string) *rest.Error {
	if s.cfg.RegistryError == nil {
		return nil
	}
	return s.cfg.RegistryError(ref)
}

func (s *Server) tag(w http.ResponseWriter, r *http.Request) {
	var req rest.TagImageRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Name == "" {
		writeError(w, http.StatusBadRequest, "invalid_argument", `name is required: send {"name":"NEW-NAME"}`)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	img := s.image(w, r)
	if img == nil {
		return
	}
	c := *img
	c.Name = req.Name
	s.images[c.Name] = &c
	writeJSON(w, http.StatusCreated, c)
}

func (s *Server) export(w http.ResponseWriter, r *http.Request) {
	format := r.URL.Query().Get("format")
	if format == "" {
		format = rest.ExportDockerArchive
	}
	if format != rest.ExportDockerArchive && format != rest.ExportOCI {
		writeError(w, http.StatusBadRequest, "invalid_argument", "format %q is invalid: use docker-archive or oci", format)
		return
	}
	s.mu.Lock()
	img := s.image(w, r)
	var c rest.Image
	if img != nil {
		c = *img
	}
	s.mu.Unlock()
	if img == nil {
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	tw := tar.NewWriter(w)
	name, body := "manifest.json", fmt.Sprintf(`[{"RepoTags":[%q]}]`, c.Name)
	if format == rest.ExportOCI {
		name, body = "oci-layout", `{"imageLayoutVersion":"1.0.0"}`
	}
	tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	io.WriteString(tw, body)
	tw.Close()
}

func (s *Server) prune(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, rest.PruneImagesResult{})
}

func (s *Server) build(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	b := Build{Dockerfile: "Dockerfile", Tags: q["t"], BuildArgs: q["build_arg"], Target: q.Get("target"),
		NoCache: q.Get("no_cache") == "1", Pull: q.Get("pull") == "1"}
	if d := q.Get("dockerfile"); d != "" {
		b.Dockerfile = d
	}
	for _, kv := range b.BuildArgs {
		if !strings.Contains(kv, "=") {
			writeError(w, http.StatusBadRequest, "invalid_argument", "build_arg %q is invalid: use KEY=VALUE", kv)
			return
		}
	}
	if err := readContext(r.Body, &b); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", "build context: %v", err)
		return
	}
	s.mu.Lock()
	s.builds = append(s.builds, b)
	s.mu.Unlock()
	if !slices.Contains(b.Files, b.Dockerfile) {
		writeError(w, http.StatusBadRequest, "invalid_argument", "the build context has no Dockerfile at %q", b.Dockerfile)
		return
	}
	s.runBuild(&stream{w: w}, b)
}

// runBuild logs a step per instruction of the Dockerfile and records the
// image under every tag.
func (s *Server) runBuild(st *stream, b Build) {
	start := time.Now()
	steps := 0
	for i, line := range strings.Split(b.Content, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		steps++
		msg := fmt.Sprintf("#%d %s", steps, line)
		st.send(rest.ImageEvent{Log: &msg})
		if line == "RUN false" {
			st.fail(&rest.Error{Code: "failed_precondition", Message: fmt.Sprintf("%s:%d: RUN false: exit code 1", b.Dockerfile, i+1)})
			return
		}
	}
	id := "sha256:" + hexSum(b.Content)
	s.mu.Lock()
	for _, t := range b.Tags {
		s.images[t] = &rest.Image{Name: t, ID: id, Size: int64(len(b.Content)), CreatedAt: time.Now().UTC()}
	}
	s.mu.Unlock()
	tags := b.Tags
	if tags == nil {
		tags = []string{}
	}
	st.send(rest.ImageEvent{Result: &rest.BuildResult{ImageID: id, Tags: tags, Steps: steps, DurationMS: time.Since(start).Milliseconds()}})
}

// readContext reads the names of a context tar, and the Dockerfile's content.
func readContext(r io.Reader, b *Build) error {
	br := bufio.NewReader(r)
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return err
		}
		src = zr
	}
	tr := tar.NewReader(src)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		b.Files = append(b.Files, hdr.Name)
		if hdr.Name == b.Dockerfile {
			content, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			b.Content = string(content)
		}
	}
}

func hexSum(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// findImage finds an image by name or ID. Preconditions: s.mu is held.
func (s *Server) findImage(ref string) *rest.Image {
	for _, img := range s.images {
		if img.Name == ref || img.ID == ref {
			return img
		}
	}
	return nil
}
