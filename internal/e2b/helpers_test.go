package e2b

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/internal/driver/fake"
	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/node"
	"github.com/denhq/den/internal/server"
	"github.com/denhq/den/internal/store"
	"github.com/denhq/den/internal/testenv"
)

// testEnv is den's server with the E2B facade mounted (api) and the
// sandbox traffic plane (traffic), over a real store, image store (with
// "busybox") and node on the fake driver, with keys of two tenants.
type testEnv struct {
	t          *testing.T
	api        string
	traffic    string
	keyA, keyB string
	st         *store.Store
	now        time.Time // the traffic plane's clock
	client     *http.Client
}

func newTestEnv(t *testing.T) *testEnv {
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
	n, err := node.New(node.Config{ID: "n1", Driver: drv, Images: images, Store: st, SnapshotDir: filepath.Join(t.TempDir(), "snapshots")})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Store: st, Node: n, Images: images, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, st: st, now: time.Unix(2_000_000_000, 0), client: &http.Client{}}
	srv.Mount(Routes, NewAPI(Config{Service: srv, Domain: "den.test"}))
	api := httptest.NewServer(srv.Handler())
	tr := httptest.NewServer(NewSandboxTraffic(TrafficConfig{Service: srv, Domain: "den.test", Now: func() time.Time { return e.now }}))
	t.Cleanup(func() {
		e.client.CloseIdleConnections()
		api.Close()
		tr.Close()
		destroyAll(st, n)
		n.Close()
	})
	e.api, e.traffic = api.URL, tr.URL
	e.keyA = addKey(t, st, "acme")
	e.keyB = addKey(t, st, "globex")
	return e
}

// destroyAll stops every sandbox, so the fake guest agents end with the test.
func destroyAll(st *store.Store, n *node.Node) {
	page, _, _ := st.Snapshot().Sandboxes(store.SandboxFilter{Limit: 1000})
	for _, sb := range page {
		_ = n.Destroy(context.Background(), sb.ID)
	}
}

func addKey(t *testing.T, st *store.Store, tenant string) string {
	t.Helper()
	secret, hash, err := server.NewE2BAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutAPIKey(context.Background(), &store.APIKey{ID: "key-" + tenant, Tenant: tenant, Hash: hash}); err != nil {
		t.Fatal(err)
	}
	return secret
}

// response is what a request got back.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request to base+path with the given headers and body.
func (e *testEnv) do(method, url, body string, header map[string]string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

// call sends a control-plane request with an E2B key.
func (e *testEnv) call(method, path, key, body string) response {
	e.t.Helper()
	h := map[string]string{}
	if key != "" {
		h["X-API-Key"] = key
	}
	if body != "" {
		h["Content-Type"] = "application/json"
	}
	return e.do(method, e.api+path, body, h)
}

// create creates a sandbox for key and returns E2B's answer.
func (e *testEnv) create(key, body string) sandbox {
	e.t.Helper()
	r := e.call("POST", "/v2/sandboxes", key, body)
	if r.status != http.StatusCreated {
		e.t.Fatalf("create: HTTP %d: %s", r.status, r.body)
	}
	var sb sandbox
	decode(e.t, r.body, &sb)
	return sb
}

func decode(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

// checkError requires an E2B error of the status, with a message that
// contains want.
func checkError(t *testing.T, r response, status int, want string) {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("HTTP %d, body %q is not an E2B error: %v", r.status, r.body, err)
	}
	if r.status != status || e.Code != status || !strings.Contains(e.Message, want) {
		t.Errorf("got HTTP %d %+v, want %d with a message containing %q", r.status, e, status, want)
	}
}
