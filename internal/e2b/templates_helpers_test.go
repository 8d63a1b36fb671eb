package e2b

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/denhq/den/internal/driver/fake"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/node"
	"github.com/denhq/den/internal/server"
	"github.com/denhq/den/internal/store"
	"github.com/denhq/den/internal/testenv"
)

// fakeBuilder is a TemplateBuilder over a real image store: a build logs
// its steps, reads the files of its COPY steps, runs hook (which can fail
// or block it) and records "busybox" under the build's names.
type fakeBuilder struct {
	images *image.Store

	mu     sync.Mutex
	hook   func(ctx context.Context, t *TemplateBuild) error
	builds []TemplateBuild
	// copied maps "<buildID> <dest>" to the content of the COPY source.
	copied map[string]string
}

func newFakeBuilder(images *image.Store) *fakeBuilder {
	return &fakeBuilder{images: images, copied: map[string]string{}}
}

func (f *fakeBuilder) setHook(h func(ctx context.Context, t *TemplateBuild) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = h
}

func (f *fakeBuilder) Build(ctx context.Context, t *TemplateBuild) error {
	f.mu.Lock()
	c := *t
	c.Log = nil
	f.builds = append(f.builds, c)
	hook := f.hook
	f.mu.Unlock()
	fmt.Fprintf(t.Log, "FROM %s%s\n", t.FromImage, t.FromTemplate)
	for i, s := range t.Steps {
		fmt.Fprintf(t.Log, "step %d: %s\n", i+1, s)
		if s.Type != StepCopy {
			continue
		}
		data, err := os.ReadFile(filepath.Join(t.ContextDir, s.FilesHash, s.Args[0]))
		if err != nil {
			return &BuildStepError{Step: i + 1, Err: err}
		}
		f.mu.Lock()
		f.copied[t.BuildID+" "+s.Args[1]] = string(data)
		f.mu.Unlock()
	}
	fmt.Fprint(t.Log, "no newline at the end")
	if hook != nil {
		if err := hook(ctx, t); err != nil {
			return err
		}
	}
	for _, name := range t.Names {
		if err := f.images.Tag("busybox", name); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeBuilder) Tag(_ context.Context, img, name string) error {
	return f.images.Tag(img, name)
}

func (f *fakeBuilder) Remove(_ context.Context, name string) error {
	if err := f.images.Remove(name); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// lastBuild is the last build Build was called with.
func (f *fakeBuilder) lastBuild(t *testing.T) TemplateBuild {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.builds) == 0 {
		t.Fatal("the builder got no build")
	}
	return f.builds[len(f.builds)-1]
}

// hasImage reports whether the image store has name.
func (f *fakeBuilder) hasImage(name string) bool {
	_, err := f.images.Get(name)
	return err == nil
}

// templateEnv is den's server with the E2B facade and a template store
// over a fakeBuilder, like testEnv; restart replaces the facade and the
// template store by new ones over the same directories.
type templateEnv struct {
	*testEnv
	st     *store.Store
	images *image.Store
	node   *node.Node
	dir    string
	fb     *fakeBuilder
	tp     *Templates
	hs     *httptest.Server
	skew   atomic.Int64 // added to the template store's clock, in seconds
	cfg    func(*TemplatesConfig)
}

func newTemplateEnv(t *testing.T, cfg func(*TemplatesConfig)) *templateEnv {
	t.Helper()
	if _, err := exec.LookPath("busybox"); err != nil {
		testenv.Missing(t, "busybox not found: apt-get install busybox-static (make deps does it)")
	}
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir(), NodeID: "n1"})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	images, err := image.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := image.BuildBusybox(ctx, images, "busybox"); err != nil {
		t.Fatalf("build busybox: %v", err)
	}
	drv, err := fake.New(fake.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(node.Config{ID: "n1", Driver: drv, Images: images, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	e := &templateEnv{
		testEnv: &testEnv{t: t, client: &http.Client{}},
		st:      st, images: images, node: n, dir: t.TempDir(), fb: newFakeBuilder(images), cfg: cfg,
	}
	e.keyA = addKey(t, st, "acme")
	e.keyB = addKey(t, st, "globex")
	e.start()
	t.Cleanup(func() {
		e.stop()
		destroyAll(st, n)
		n.Close()
	})
	return e
}

func (e *templateEnv) start() {
	e.t.Helper()
	cfg := TemplatesConfig{Dir: e.dir, Builder: e.fb, Now: func() time.Time {
		return time.Now().Add(time.Duration(e.skew.Load()) * time.Second)
	}}
	if e.cfg != nil {
		e.cfg(&cfg)
	}
	tp, err := OpenTemplates(cfg)
	if err != nil {
		e.t.Fatalf("open templates: %v", err)
	}
	srv, err := server.New(server.Config{Store: e.st, Node: e.node, Images: e.images, Version: "test"})
	if err != nil {
		e.t.Fatal(err)
	}
	srv.Mount(Routes, NewAPI(Config{Service: srv, Domain: "den.test", Templates: tp}))
	e.tp, e.hs = tp, httptest.NewServer(srv.Handler())
	e.api = e.hs.URL
}

func (e *templateEnv) stop() {
	e.client.CloseIdleConnections()
	e.hs.Close()
	if err := e.tp.Close(); err != nil {
		e.t.Errorf("close templates: %v", err)
	}
}

// restart replaces the facade and template store, as a den restart does.
func (e *templateEnv) restart() {
	e.stop()
	e.start()
}

// mustCall sends a control-plane request and requires the status.
func (e *templateEnv) mustCall(method, path, key, body string, status int) response {
	e.t.Helper()
	r := e.call(method, path, key, body)
	if r.status != status {
		e.t.Fatalf("%s %s: HTTP %d, want %d: %s", method, path, r.status, status, r.body)
	}
	return r
}

// requestBuild starts a template build request and returns E2B's answer.
func (e *templateEnv) requestBuild(key, body string) templateRequestResponse {
	e.t.Helper()
	var resp templateRequestResponse
	decode(e.t, e.mustCall("POST", "/v3/templates", key, body, http.StatusAccepted).body, &resp)
	return resp
}

// upload gets the files link of hash and PUTs archive to it.
func (e *templateEnv) upload(key, id, hash string, archive []byte) {
	e.t.Helper()
	var link templateBuildFileUpload
	decode(e.t, e.mustCall("GET", "/templates/"+id+"/files/"+hash, key, "", http.StatusCreated).body, &link)
	if r := e.put(link.URL, archive); r.status != http.StatusNoContent {
		e.t.Fatalf("upload: HTTP %d: %s", r.status, r.body)
	}
}

// put sends archive to an upload link, without an API key as the SDKs do.
func (e *templateEnv) put(url string, archive []byte) response {
	e.t.Helper()
	return e.do("PUT", url, string(archive), map[string]string{"Content-Type": "application/octet-stream"})
}

// wait polls a build's status as the SDKs do, logsOffset advancing by the
// entries received, until it is ready or failed and the log is drained.
func (e *templateEnv) wait(key, id, buildID string) (templateBuildInfo, []buildLogEntry) {
	e.t.Helper()
	return e.waitFrom(key, id, buildID, 0)
}

// waitFrom is wait for a caller that already received offset log entries.
func (e *templateEnv) waitFrom(key, id, buildID string, offset int) (templateBuildInfo, []buildLogEntry) {
	e.t.Helper()
	var logs []buildLogEntry
	deadline := time.Now().Add(20 * time.Second)
	for {
		var info templateBuildInfo
		path := fmt.Sprintf("/templates/%s/builds/%s/status?logsOffset=%d", id, buildID, offset+len(logs))
		decode(e.t, e.mustCall("GET", path, key, "", http.StatusOK).body, &info)
		logs = append(logs, info.LogEntries...)
		if (info.Status == buildReady || info.Status == buildError) && len(info.LogEntries) == 0 {
			return info, logs
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("build %s still %s after 20 s", buildID, info.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// build runs a whole build of name from image with steps (JSON) and waits
// for it; files maps hashes to archives to upload first.
func (e *templateEnv) build(key, request, from, steps string, files map[string][]byte) (templateRequestResponse, templateBuildInfo) {
	e.t.Helper()
	resp := e.requestBuild(key, request)
	for hash, archive := range files {
		e.upload(key, resp.TemplateID, hash, archive)
	}
	body := fmt.Sprintf(`{"fromImage":%q,"steps":%s}`, from, steps)
	e.mustCall("POST", "/v2/templates/"+resp.TemplateID+"/builds/"+resp.BuildID, key, body, http.StatusAccepted)
	info, _ := e.wait(key, resp.TemplateID, resp.BuildID)
	return resp, info
}

// tarEntry is one entry of a test archive.
type tarEntry struct {
	hdr  tar.Header
	body string
}

func file(name, body string) tarEntry {
	return tarEntry{tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}, body}
}

func dirEntry(name string) tarEntry {
	return tarEntry{tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}, ""}
}

func symlink(name, target string) tarEntry {
	return tarEntry{tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target}, ""}
}

// makeTar writes a tar archive of entries, gzip-compressed when gz.
func makeTar(t *testing.T, gz bool, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	var zw *gzip.Writer
	tw := tar.NewWriter(&buf)
	if gz {
		zw = gzip.NewWriter(&buf)
		tw = tar.NewWriter(zw)
	}
	for _, en := range entries {
		if err := tw.WriteHeader(&en.hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(en.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// sha is a files hash of the SDKs' shape for a test name.
func sha(name string) string {
	return fmt.Sprintf("%x", sha256.Sum256([]byte(name)))
}

// stepsJSON encodes steps as the SDKs send them.
func stepsJSON(t *testing.T, steps ...templateStep) string {
	t.Helper()
	b, err := json.Marshal(steps)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// messages are the messages of log entries.
func messages(entries []buildLogEntry) string {
	var b strings.Builder
	for _, en := range entries {
		b.WriteString(en.Message + "\n")
	}
	return b.String()
}
