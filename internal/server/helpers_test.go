package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/guest"
	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/node"
	"github.com/denhq/den/internal/store"
	"github.com/denhq/den/internal/testenv"
)

// Tenants and their API keys in every testEnv.
const (
	tenantA = "acme"
	tenantB = "globex"
	nodeID  = "node-1"
	// failKey in a create request's metadata makes the stub node fail the
	// start with the value as the reason.
	failKey = "stub.fail"
	// stubDiskQuota is the disk every stub sandbox may fill through
	// POST /files; see stubNode.guestHandler.
	stubDiskQuota = 1 << 20
)

// t0 is the fake clock's start.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeClock is a settable clock, shared by the server and the stub node.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// stubNode is a Node without a runtime. Start marks the record running (or
// failed, when its metadata holds failKey) and Destroy deletes it, both with
// compare-and-set like internal/node. Every running sandbox's guest channel
// reaches one in-process guest agent, which runs processes on the host.
type stubNode struct {
	store *store.Store
	now   func() time.Time

	mu   sync.Mutex
	sock string        // unix socket of the guest agent
	seen []http.Header // headers of every request the guest received
	// noSuspend makes the stub a runtime that cannot suspend.
	noSuspend bool
	// resumeGate, when set, is received from before each resume (tests of
	// the single flight); resumes counts the resumes done.
	resumeGate chan struct{}
	resumes    int
	// suspendErr and resumeErr, when set, fail those calls.
	suspendErr, resumeErr error
	// spares is how many creates StartClaimed claims; discarded counts
	// the claims whose record was refused.
	spares, discarded int
}

// StartClaimed claims one of n.spares when there is one: the sandbox is
// recorded once, running; a refused record discards the claim.
func (n *stubNode) StartClaimed(ctx context.Context, sb *store.Sandbox, record func(*store.Sandbox) error) (*store.Sandbox, error) {
	n.mu.Lock()
	if n.spares == 0 {
		n.mu.Unlock()
		return nil, nil
	}
	n.spares--
	n.mu.Unlock()
	rec := sb.Clone()
	now := n.now()
	rec.State, rec.StartedAt = store.StateRunning, now
	if rec.TimeoutSec > 0 {
		rec.ExpiresAt = now.Add(time.Duration(rec.TimeoutSec) * time.Second)
	}
	if err := record(rec); err != nil {
		n.mu.Lock()
		n.discarded++
		n.mu.Unlock()
		return nil, err
	}
	return rec, nil
}

// claims sets the stub's spares and returns its spares and discarded
// claims as they were.
func (n *stubNode) claims(spares int) (left, discarded int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	left, discarded = n.spares, n.discarded
	if spares >= 0 {
		n.spares = spares
	}
	return left, discarded
}

func (n *stubNode) ID() string { return nodeID }

// stubPoolBudgetMB is the stub node's memory budget for pools.
const stubPoolBudgetMB = 4096

// PoolStatus reports every pool full, as a node whose spares booted.
func (n *stubNode) PoolStatus() map[string]PoolState {
	recs, _ := n.store.Snapshot().Pools("")
	out := map[string]PoolState{}
	for _, rec := range recs {
		out[rec.ID] = PoolState{Ready: rec.Size}
	}
	return out
}

func (n *stubNode) PoolMemoryBudgetMB() (int64, error) { return stubPoolBudgetMB, nil }

func (n *stubNode) Runtimes() []node.RuntimeInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	return []node.RuntimeInfo{{Capabilities: driver.Capabilities{Name: "stub", Suspend: !n.noSuspend, Pool: true}, Default: true}}
}

func (n *stubNode) Resources() node.Resources {
	return node.Resources{CPUs: 4, MemoryMB: 8192, MemoryAvailableMB: 4096}
}

func (n *stubNode) SetNetwork(ctx context.Context, id string, pol store.NetworkPolicy) (*store.Sandbox, error) {
	for {
		sb, err := n.store.Snapshot().Sandbox(id)
		if err != nil {
			return nil, err
		}
		sb.Network = &pol
		if err := n.store.UpdateSandbox(ctx, sb); !errdefs.Is(err, errdefs.Conflict) {
			return sb, err
		}
	}
}

func (n *stubNode) Runtime(name string) (node.RuntimeInfo, error) {
	rt := n.Runtimes()[0]
	if name != "" && name != rt.Name {
		return node.RuntimeInfo{}, errdefs.New(errdefs.InvalidArgument, "unknown runtime %q: node stub runs stub", name)
	}
	return rt, nil
}

// Suspend marks a running sandbox suspended with a made-up snapshot, its
// timers stopped as internal/node stops them.
func (n *stubNode) Suspend(ctx context.Context, id string) (*store.Sandbox, error) {
	n.mu.Lock()
	fail := n.suspendErr
	n.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	return n.transition(ctx, id, store.StateRunning, "only a running sandbox can be suspended", func(sb *store.Sandbox) {
		sb.State = store.StateSuspended
		sb.Snapshot = &store.SnapshotRef{Generation: 1, Size: 4096, Digest: "sha256:00"}
		sb.StopTimers(n.now())
	})
}

// Resume marks a suspended sandbox running, its timers restarted.
func (n *stubNode) Resume(ctx context.Context, id string) (*store.Sandbox, error) {
	n.mu.Lock()
	gate, fail := n.resumeGate, n.resumeErr
	n.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if fail != nil {
		return nil, fail
	}
	sb, err := n.transition(ctx, id, store.StateSuspended, "only a suspended sandbox can be resumed", func(sb *store.Sandbox) {
		sb.State = store.StateRunning
		sb.RestartTimers(n.now())
	})
	if err == nil {
		n.mu.Lock()
		n.resumes++
		n.mu.Unlock()
	}
	return sb, err
}

// resumeCount is how many resumes the stub did.
func (n *stubNode) resumeCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.resumes
}

// transition changes a record in state from with compare-and-set;
// FailedPrecondition as internal/node words it otherwise.
func (n *stubNode) transition(ctx context.Context, id, from, what string, change func(*store.Sandbox)) (*store.Sandbox, error) {
	var state string
	sb, err := n.update(ctx, id, func(sb *store.Sandbox) {
		if state = sb.State; state == from {
			change(sb)
		}
	})
	if err != nil {
		return nil, err
	}
	if state != from {
		return nil, errdefs.New(errdefs.FailedPrecondition, "sandbox %s is %s: %s", id, state, what)
	}
	return sb, nil
}

func (n *stubNode) Start(ctx context.Context, id string) (*store.Sandbox, error) {
	var reason string
	sb, err := n.update(ctx, id, func(sb *store.Sandbox) {
		if reason = sb.Metadata[failKey]; reason != "" {
			sb.State, sb.Reason = store.StateFailed, reason
			return
		}
		now := n.now()
		sb.State, sb.StartedAt = store.StateRunning, now
		if sb.TimeoutSec > 0 {
			sb.ExpiresAt = now.Add(time.Duration(sb.TimeoutSec) * time.Second)
		}
	})
	if err != nil {
		return nil, err
	}
	if reason != "" {
		return nil, fmt.Errorf("create sandbox %s: %s", id, reason)
	}
	return sb, nil
}

func (n *stubNode) Destroy(ctx context.Context, id string) error {
	err := n.store.DeleteSandbox(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}

func (n *stubNode) DialGuest(ctx context.Context, id string) (net.Conn, error) {
	sb, err := n.store.Snapshot().Sandbox(id)
	if err != nil {
		return nil, err
	}
	if sb.State != store.StateRunning {
		return nil, errdefs.New(errdefs.FailedPrecondition, "sandbox %s is %s", id, sb.State)
	}
	n.mu.Lock()
	sock := n.sock
	n.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, "unix", sock)
}

func (n *stubNode) update(ctx context.Context, id string, change func(*store.Sandbox)) (*store.Sandbox, error) {
	for attempt := 0; ; attempt++ {
		sb, err := n.store.Snapshot().Sandbox(id)
		if err != nil {
			return nil, err
		}
		change(sb)
		err = n.store.UpdateSandbox(ctx, sb)
		if err == nil || !errdefs.Is(err, errdefs.Conflict) || attempt >= 10 {
			return sb, err
		}
	}
}

// guestHandler wraps the agent's handler: it records request headers and,
// standing in for a real disk quota, answers an upload larger than
// stubDiskQuota as a full disk does in a real sandbox (507).
func (n *stubNode) guestHandler(agent http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		n.seen = append(n.seen, r.Header.Clone())
		n.mu.Unlock()
		if r.Method == http.MethodPost && r.URL.Path == "/files" && r.ContentLength > stubDiskQuota {
			err := errdefs.New(errdefs.InsufficientStorage, "write %s: no space left on device", r.URL.Query().Get("path"))
			writeError(w, err)
			return
		}
		agent.ServeHTTP(w, r)
	})
}

// setSock points the guest channel of every sandbox at a unix socket.
func (n *stubNode) setSock(path string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sock = path
}

// lastGuestHeaders returns the headers of the last request the guest saw.
func (n *stubNode) lastGuestHeaders() http.Header {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.seen) == 0 {
		return nil
	}
	return n.seen[len(n.seen)-1]
}

// testEnv is a Server on httptest with a real store and image store (holding
// "busybox"), the stub node, a fake clock and API keys of two tenants.
type testEnv struct {
	t      *testing.T
	srv    *Server
	url    string
	store  *store.Store
	node   *stubNode
	clock  *fakeClock
	keyA   string // tenant A
	keyB   string // tenant B
	client *http.Client
}

// opts change the server's Config before it starts (a Builder, limits).
func newTestEnv(t *testing.T, opts ...func(*Config)) *testEnv {
	t.Helper()
	if _, err := exec.LookPath("busybox"); err != nil {
		testenv.Missing(t, "busybox not found: apt-get install busybox-static (make deps does it)")
	}
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir(), NodeID: nodeID})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	images, err := image.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatalf("open image store: %v", err)
	}
	if _, err := image.BuildBusybox(ctx, images, "busybox"); err != nil {
		t.Fatalf("build busybox image: %v", err)
	}
	clock := &fakeClock{now: t0}
	node := &stubNode{store: st, now: clock.Now}
	node.setSock(serveGuestHandler(t, node))
	cfg := Config{Store: st, Node: node, Images: images, Version: "test", Logger: slog.New(slog.DiscardHandler), Now: clock.Now}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	client := &http.Client{}
	t.Cleanup(client.CloseIdleConnections)
	e := &testEnv{t: t, srv: srv, url: hs.URL, store: st, node: node, clock: clock, client: client}
	e.keyA = e.addKey(tenantA)
	e.keyB = e.addKey(tenantB)
	return e
}

// serveGuestHandler serves a guest agent, wrapped by node.guestHandler, on a
// unix socket and returns the socket's path.
func serveGuestHandler(t *testing.T, node *stubNode) string {
	t.Helper()
	// A short directory: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "den-server-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "guest.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	agent, err := guest.New(guest.Config{Env: os.Environ()})
	if err != nil {
		t.Fatalf("guest.New: %v", err)
	}
	hs := &http.Server{Handler: node.guestHandler(agent.Handler())}
	done := make(chan struct{})
	go func() {
		defer close(done)
		hs.Serve(ln)
	}()
	t.Cleanup(func() {
		hs.Close()
		agent.Close()
		<-done
	})
	return sock
}

func (e *testEnv) addKey(tenant string) string {
	e.t.Helper()
	secret, hash, err := NewAPIKey()
	if err != nil {
		e.t.Fatal(err)
	}
	k := &store.APIKey{ID: "key-" + tenant, Tenant: tenant, Hash: hash}
	if err := e.store.PutAPIKey(context.Background(), k); err != nil {
		e.t.Fatalf("put api key: %v", err)
	}
	return secret
}

// do sends a request with key in X-API-Key (none when key is "") and a JSON
// body (none when body is ""), and returns the status and response body.
func (e *testEnv) do(method, path, key, body string) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// doJSON is do that requires wantStatus and decodes the body into out
// (unless out is nil).
func (e *testEnv) doJSON(method, path, key, body string, wantStatus int, out any) {
	e.t.Helper()
	status, b := e.do(method, path, key, body)
	if status != wantStatus {
		e.t.Fatalf("%s %s: status %d, want %d; body: %s", method, path, status, wantStatus, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

// create creates a sandbox for key from a JSON request and returns it; it
// fails the test unless the answer is 201.
func (e *testEnv) create(key, body string) rest.Sandbox {
	e.t.Helper()
	var sb rest.Sandbox
	e.doJSON("POST", "/v1/sandboxes", key, body, http.StatusCreated, &sb)
	return sb
}

// createFailed creates a sandbox that the stub node fails to start and
// returns its ID.
func (e *testEnv) createFailed(key, name string) string {
	e.t.Helper()
	body := fmt.Sprintf(`{"image":"busybox","name":%q,"metadata":{%q:"no capacity"}}`, name, failKey)
	e.doJSON("POST", "/v1/sandboxes", key, body, http.StatusInternalServerError, nil)
	sb, err := e.store.Snapshot().SandboxByName(tenantOf(e, key), name)
	if err != nil {
		e.t.Fatalf("failed sandbox %s: %v", name, err)
	}
	return sb.ID
}

func tenantOf(e *testEnv, key string) string {
	if key == e.keyB {
		return tenantB
	}
	return tenantA
}

// checkAPIError requires an error response of the status, code and message.
func checkAPIError(t *testing.T, status int, body []byte, wantStatus int, want rest.Error) {
	t.Helper()
	var got rest.Error
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("status %d, body %q is not an API error: %v", status, body, err)
	}
	if status != wantStatus {
		t.Errorf("status = %d, want %d (body %s)", status, wantStatus, body)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
}

// apiKeyInterceptor sends an API key with every Connect call.
type apiKeyInterceptor string

func (k apiKeyInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("X-API-Key", string(k))
		return next(ctx, req)
	}
}

func (k apiKeyInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("X-API-Key", string(k))
		return conn
	}
}

func (k apiKeyInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// testCtx is a context that ends with the test, bounded so that a hung
// stream fails instead of stalling the run.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// Stats reports fixed figures for a running sandbox.
func (n *stubNode) Stats(ctx context.Context, id string) (driver.Stats, error) {
	if _, err := n.store.Snapshot().Sandbox(id); err != nil {
		return driver.Stats{}, err
	}
	return driver.Stats{CPUUsageNanos: 1e9, MemoryBytes: 1 << 20, MemoryLimit: 512 << 20, At: n.now()}, nil
}
