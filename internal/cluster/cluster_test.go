package cluster_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/denhq/den/internal/agent"
	"github.com/denhq/den/internal/cluster"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/nodeproto"
	"github.com/denhq/den/internal/pki"
	"github.com/denhq/den/internal/store"
)

func TestJoinHelloReady(t *testing.T) {
	tc := newTestCluster(t)
	var mu sync.Mutex
	var connected []string
	srv := tc.listen("s1", cluster.Config{OnConnect: func(id string, _ *nodelink.Session) {
		// The record of this connection is readable here.
		n, err := tc.Store.Snapshot().Node(id)
		mu.Lock()
		if err == nil && n.State == store.NodeReady && n.Server == "s1" {
			connected = append(connected, id)
		}
		mu.Unlock()
	}})
	cfg := agentConfig(t, srv, tc.token(1, time.Time{}), "box")
	cfg.Labels, cfg.Pool = map[string]string{"zone": "a"}, "shared"
	var sessions sync.WaitGroup
	sessions.Add(1)
	var once sync.Once
	cfg.OnSession = func(*nodelink.Session) { once.Do(sessions.Done) }
	runAgent(t, cfg)
	n := tc.waitState("box", store.NodeReady)
	sessions.Wait()
	if n.Server != "s1" || n.Pool != "shared" || n.Labels["zone"] != "a" || n.Capacity.CPUs != 4 || n.Runtimes[0] != "gvisor" || n.Epoch == 0 {
		t.Fatalf("node record: %+v", n)
	}
	waitFor(t, "the registry to hold the session", func() bool { _, ok := srv.Session(n.ID); return ok })
	if ids := srv.Nodes(); len(ids) != 1 || ids[0] != n.ID {
		t.Fatalf("registry nodes %v, want [%s]", ids, n.ID)
	}
	mu.Lock()
	if len(connected) != 1 || connected[0] != n.ID {
		t.Errorf("OnConnect calls %v", connected)
	}
	mu.Unlock()
	for _, f := range []string{"node.pem", "ca.pem", "node.json"} {
		fi, err := os.Stat(filepath.Join(cfg.DataDir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, fi.Mode().Perm())
		}
	}
	tok, _ := tc.Store.Snapshot().JoinTokens()
	if len(tok) != 1 || tok[0].Used != 1 {
		t.Errorf("token after the join: %+v", tok)
	}
}

// The server calls the node over the same session (the sandbox
// operations go this way): Setup registered the node's handlers on the
// agent's Mux, knowing its node ID, before the first session.
func TestServerCallsNode(t *testing.T) {
	tc := newTestCluster(t)
	srv := tc.listen("s1", cluster.Config{})
	cfg := agentConfig(t, srv, tc.token(1, time.Time{}), "box")
	setupID := make(chan string, 1)
	var sessions, closed atomic.Int32
	cfg.Setup = func(_ context.Context, nodeID string, mux *nodelink.Mux) (agent.Hooks, error) {
		setupID <- nodeID
		mux.HandleCall("test.echo", func(_ context.Context, req json.RawMessage) (any, error) { return nodeID + ":" + string(req), nil })
		return agent.Hooks{
			OnSession: func(*nodelink.Session) { sessions.Add(1) },
			Sandboxes: func() []string { return []string{"sb-1"} },
			Close:     func() { closed.Add(1) },
		}, nil
	}
	stop := runAgent(t, cfg)
	n := tc.waitState("box", store.NodeReady)
	if id := <-setupID; id != n.ID {
		t.Fatalf("Setup got node ID %q, want %q", id, n.ID)
	}
	var s *nodelink.Session
	waitFor(t, "the session", func() (ok bool) { s, ok = srv.Session(n.ID); return ok })
	var got string
	if err := s.Call(context.Background(), "test.echo", "hi", &got); err != nil || got != n.ID+`:"hi"` {
		t.Fatalf("call the node: %q, %v", got, err)
	}
	waitFor(t, "OnSession", func() bool { return sessions.Load() == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if closed.Load() != 1 {
		t.Fatalf("Hooks.Close called %d times, want 1", closed.Load())
	}
}

// Node-side handlers on the server see the calling node's ID.
func TestHandlersSeePeer(t *testing.T) {
	tc := newTestCluster(t)
	mux := nodelink.NewMux()
	mux.HandleCall("test.whoami", func(ctx context.Context, _ json.RawMessage) (any, error) { return nodelink.Peer(ctx), nil })
	srv := tc.listen("s1", cluster.Config{Mux: mux})
	cfg := agentConfig(t, srv, tc.token(1, time.Time{}), "box")
	got := make(chan string, 1)
	cfg.OnSession = func(s *nodelink.Session) {
		var id string
		s.Call(context.Background(), "test.whoami", nil, &id)
		got <- id
	}
	runAgent(t, cfg)
	n := tc.waitState("box", store.NodeReady)
	if id := <-got; id != n.ID {
		t.Fatalf("handler saw peer %q, want %q", id, n.ID)
	}
}

func TestJoinRefusals(t *testing.T) {
	tc := newTestCluster(t)
	srv := tc.listen("s1", cluster.Config{})
	other, _ := pki.NewCA("other")
	foreign, _ := nodeproto.NewToken(other.Hash())
	used := tc.token(1, time.Time{})
	if _, err := agent.New(context.Background(), agentConfig(t, srv, used, "first")); err != nil {
		t.Fatal(err)
	}
	good, _ := nodeproto.ParseToken(tc.token(5, time.Time{}))
	wrongSecret := nodeproto.Token{CAHash: good.CAHash, ID: good.ID, Secret: strings.Repeat("0", 40)}
	unknown, _ := nodeproto.NewToken(tc.CA.Hash()) // never recorded: the join's write refuses it
	for _, tt := range []struct {
		name, token string
		kind        errdefs.Kind
		msg         string
	}{
		{"malformed", "den1.abc", errdefs.InvalidArgument, "malformed join token: 2 dot-separated parts, want 4"},
		{"no token", "", errdefs.InvalidArgument, "a join token is required"},
		{"wrong CA hash", foreign.String(), errdefs.PermissionDenied, "does not chain to the CA of the join token"},
		{"wrong secret", wrongSecret.String(), errdefs.PermissionDenied, "join token " + good.ID + " is not valid"},
		{"unknown token", unknown.String(), errdefs.PermissionDenied, "join token " + unknown.ID + " is not valid"},
		{"used up", used, errdefs.PermissionDenied, "is used up (1 of 1 joins)"},
		{"expired", tc.token(1, time.Now().Add(-time.Minute)), errdefs.PermissionDenied, "expired at"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := agent.New(context.Background(), agentConfig(t, srv, tt.token, "n"))
			if errdefs.KindOf(err) != tt.kind || err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("join: %v, want %v %q", err, tt.kind, tt.msg)
			}
		})
	}
	nodes, _ := tc.Store.Snapshot().Nodes()
	if len(nodes) != 1 {
		t.Fatalf("%d nodes recorded, want only the first", len(nodes))
	}
}

// Agents racing on a one-use token: exactly one joins.
func TestRacingJoins(t *testing.T) {
	tc := newTestCluster(t)
	srv := tc.listen("s1", cluster.Config{})
	tok := tc.token(1, time.Time{})
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cfg := agentConfig(t, srv, tok, fmt.Sprintf("racer-%d", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = agent.New(context.Background(), cfg)
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case errdefs.KindOf(err) != errdefs.PermissionDenied || !strings.Contains(err.Error(), "is used up"):
			t.Errorf("a losing join: %v", err)
		}
	}
	nodes, _ := tc.Store.Snapshot().Nodes()
	if won != 1 || len(nodes) != 1 {
		t.Fatalf("%d joins won and %d nodes recorded; want 1 and 1", won, len(nodes))
	}
}

// A connection without a certificate gets nothing but a join.
func TestNoCertOnlyJoins(t *testing.T) {
	tc := newTestCluster(t)
	srv := tc.listen("s1", cluster.Config{})
	addr := srv.Addr().String()
	joinTLS := nodeproto.JoinTLSConfig(tc.CA.Hash())

	// A node link over it: the hello never gets an answer.
	s, err := rawSession(t, addr, joinTLS)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hello(ctx, s, "sneaky"); errdefs.KindOf(err) != errdefs.Unavailable {
		t.Fatalf("hello without a certificate: %v, want Unavailable", err)
	}

	// A bad join request: a refusal, then the connection closes.
	c, err := tls.Dial("tcp", addr, joinTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := nodeproto.WriteFrame(c, nodeproto.JoinRequest{Token: "nope"}); err != nil {
		t.Fatal(err)
	}
	var resp nodeproto.JoinResponse
	if err := nodeproto.ReadFrame(c, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Error == nil || resp.Error.Code != "invalid_argument" || !strings.Contains(resp.Error.Message, "malformed join token") || resp.Cert != "" {
		t.Fatalf("answer to a bad join: %+v", resp)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("after the refusal: %v, want EOF", err)
	}
	// A token of another CA, sent by a client that skipped its check.
	other, _ := pki.NewCA("other")
	foreign, _ := nodeproto.NewToken(other.Hash())
	csr, _, _ := pki.NewCSR("x")
	if resp := joinRaw(t, addr, joinTLS, nodeproto.JoinRequest{Token: foreign.String(), CSR: string(csr), Name: "x"}); resp.Error == nil ||
		resp.Error.Code != "permission_denied" || !strings.Contains(resp.Error.Message, "is for another cluster CA") {
		t.Fatalf("answer to a join with another CA's token: %+v", resp)
	}
	nodes, _ := tc.Store.Snapshot().Nodes()
	if len(nodes) != 0 || len(srv.Nodes()) != 0 {
		t.Fatalf("nodes %v, sessions %v: want none", nodes, srv.Nodes())
	}
}

// joinRaw makes one join exchange by hand.
func joinRaw(t *testing.T, addr string, tcfg *tls.Config, req nodeproto.JoinRequest) nodeproto.JoinResponse {
	t.Helper()
	c, err := tls.Dial("tcp", addr, tcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := nodeproto.WriteFrame(c, req); err != nil {
		t.Fatal(err)
	}
	var resp nodeproto.JoinResponse
	if err := nodeproto.ReadFrame(c, &resp); err != nil {
		t.Fatal(err)
	}
	return resp
}

// Certificates of another CA, and server certificates of ours, are
// refused at the handshake.
func TestForeignCertificatesRefused(t *testing.T) {
	tc := newTestCluster(t)
	srv := tc.listen("s1", cluster.Config{})
	other, _ := pki.NewCA("other")
	csr, key, _ := pki.NewCSR("x")
	certPEM, err := other.SignNode(csr, "n-foreign")
	if err != nil {
		t.Fatal(err)
	}
	foreignNode, _ := tls.X509KeyPair(certPEM, key)
	ourServer, _ := tc.CA.IssueServer("s2", nil)
	ourServerTLS, _ := ourServer.TLS()
	for name, cert := range map[string]tls.Certificate{"node of another CA": foreignNode, "server of our CA": ourServerTLS} {
		t.Run(name, func(t *testing.T) {
			s, err := rawSession(t, srv.Addr().String(), pki.ClientConfig(tc.CA.Pool(), cert))
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				err = hello(ctx, s, "x")
			}
			if err == nil {
				t.Fatal("the node listener accepted the certificate")
			}
		})
	}
	if len(srv.Nodes()) != 0 {
		t.Fatalf("sessions %v, want none", srv.Nodes())
	}
}

// Heartbeats stop: the node is marked down and its sandboxes are lost;
// the agent comes back without its token and the node is ready again.
func TestDownAfterTTLThenBack(t *testing.T) {
	tc := newTestCluster(t)
	var mu sync.Mutex
	disconnected := 0
	srv := tc.listen("s1", cluster.Config{HeartbeatTTL: 300 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond,
		OnDisconnect: func(string, *nodelink.Session) { mu.Lock(); disconnected++; mu.Unlock() }})
	cfg := agentConfig(t, srv, tc.token(1, time.Time{}), "box")
	stop := runAgent(t, cfg)
	n := tc.waitState("box", store.NodeReady)
	ctx := context.Background()
	for _, sb := range []*store.Sandbox{
		{ID: "live", Tenant: "acme", Node: n.ID, State: store.StateRunning},
		{ID: "done", Tenant: "acme", Node: n.ID, State: store.StateTerminated},
	} {
		if err := tc.Store.CreateSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("agent: %v", err)
	}
	down := tc.waitState("box", store.NodeDown)
	if down.Epoch != n.Epoch {
		t.Errorf("down epoch %d, want %d", down.Epoch, n.Epoch)
	}
	snap := tc.Store.Snapshot()
	if sb, _ := snap.Sandbox("live"); sb.State != store.StateFailed || sb.Reason != store.ReasonNodeLost {
		t.Errorf("live sandbox after node down: %s %q", sb.State, sb.Reason)
	}
	if sb, _ := snap.Sandbox("done"); sb.State != store.StateTerminated {
		t.Errorf("terminated sandbox after node down: %s", sb.State)
	}
	mu.Lock()
	if disconnected != 1 {
		t.Errorf("OnDisconnect called %d times, want 1", disconnected)
	}
	mu.Unlock()

	// Restart without the token: the saved identity is used.
	cfg.Token = ""
	runAgent(t, cfg)
	back := tc.waitState("box", store.NodeReady)
	if back.ID != n.ID || back.Epoch <= n.Epoch {
		t.Fatalf("after the restart: id %s epoch %d, want id %s and an epoch after %d", back.ID, back.Epoch, n.ID, n.Epoch)
	}
}

// A node that is connected but silent is marked down, and its session
// is closed so that it reconnects.
func TestSilentNodeDown(t *testing.T) {
	tc := newTestCluster(t)
	srv := tc.listen("s1", cluster.Config{HeartbeatTTL: 200 * time.Millisecond})
	cfg := agentConfig(t, srv, tc.token(1, time.Time{}), "quiet")
	if _, err := agent.New(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	s, err := rawSession(t, srv.Addr().String(), nodeTLS(t, cfg.DataDir))
	if err != nil {
		t.Fatal(err)
	}
	if err := hello(context.Background(), s, "quiet"); err != nil {
		t.Fatal(err)
	}
	tc.waitState("quiet", store.NodeReady)
	tc.waitState("quiet", store.NodeDown)
	<-s.Done()
	if err := s.Call(context.Background(), nodeproto.MethodHeartbeat, nodeproto.Heartbeat{}, nil); err == nil {
		t.Fatal("heartbeat on a closed session succeeded")
	}
}

// A server that lost a node which reconnected to another server does not
// mark it down: its write carries an old epoch.
func TestStaleServerDoesNotMarkDown(t *testing.T) {
	tc := newTestCluster(t)
	a := tc.listen("a", cluster.Config{HeartbeatTTL: 200 * time.Millisecond})
	b := tc.listen("b", cluster.Config{HeartbeatTTL: time.Hour})
	cfg := agentConfig(t, a, tc.token(1, time.Time{}), "mover")
	if _, err := agent.New(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	tcfg := nodeTLS(t, cfg.DataDir)
	sa, err := rawSession(t, a.Addr().String(), tcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := hello(context.Background(), sa, "mover"); err != nil {
		t.Fatal(err)
	}
	first := tc.waitState("mover", store.NodeReady)
	sb, err := rawSession(t, b.Addr().String(), tcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := hello(context.Background(), sb, "mover"); err != nil {
		t.Fatal(err)
	}
	// Server a gives up on its (silent) session: it closes it ...
	<-sa.Done()
	// ... and the node stays ready, on b.
	n := tc.nodeByName("mover")
	if n.State != store.NodeReady || n.Server != "b" || n.Epoch <= first.Epoch {
		t.Fatalf("after server a gave up: %+v", n)
	}
	if _, ok := b.Session(n.ID); !ok {
		t.Fatal("server b lost the session")
	}
}

// Renewal gives the node a new certificate (new key) for the same ID,
// which the next connection uses.
func TestRenewal(t *testing.T) {
	tc := newTestCluster(t)
	srv := tc.listen("s1", cluster.Config{HeartbeatInterval: 20 * time.Millisecond})
	cfg := agentConfig(t, srv, tc.token(1, time.Time{}), "renewer")
	if _, err := agent.New(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	before := nodeCert(t, cfg.DataDir)
	cfg.Token = ""
	cfg.NeedsRenewal = func(c *x509.Certificate, _ time.Time) bool { return c.SerialNumber.Cmp(before.SerialNumber) == 0 }
	stop := runAgent(t, cfg)
	var after *x509.Certificate
	waitFor(t, "a renewed certificate", func() bool {
		after = nodeCert(t, cfg.DataDir)
		return after.SerialNumber.Cmp(before.SerialNumber) != 0
	})
	if after.Subject.CommonName != before.Subject.CommonName || after.PublicKey.(*ecdsa.PublicKey).Equal(before.PublicKey) {
		t.Fatalf("renewed certificate %q (new key: %v), want %q with a new key", after.Subject.CommonName,
			!after.PublicKey.(*ecdsa.PublicKey).Equal(before.PublicKey), before.Subject.CommonName)
	}
	first := tc.waitState("renewer", store.NodeReady)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The next start connects with the renewed certificate.
	cfg.NeedsRenewal = func(*x509.Certificate, time.Time) bool { return false }
	runAgent(t, cfg)
	waitFor(t, "a new connection", func() bool {
		n := tc.nodeByName("renewer")
		return n.State == store.NodeReady && n.Epoch > first.Epoch
	})
	if got := nodeCert(t, cfg.DataDir); got.SerialNumber.Cmp(after.SerialNumber) != 0 {
		t.Fatalf("the certificate changed again")
	}
}

// A rotation of the CA reaches a running agent through its heartbeats:
// when the server trusts another set of CAs, or signs with another, the
// agent renews and keeps the CAs the answer names; its heartbeats report
// them. After the old CA is dropped its next connection works on the new
// CA alone.
func TestRenewalFollowsCARotation(t *testing.T) {
	tc := newTestCluster(t)
	oldCA := tc.CA
	newCA, err := pki.NewCA("next")
	if err != nil {
		t.Fatal(err)
	}
	auth := pki.NewAuthority(oldCA)
	certs := pki.NewHolder(serverCert(t, oldCA))
	srv := tc.listen("s1", cluster.Config{HeartbeatInterval: 20 * time.Millisecond, CA: auth, Certs: certs})
	cfg := agentConfig(t, srv, tc.token(1, time.Time{}), "rotator")
	if _, err := agent.New(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Token = ""
	stop := runAgent(t, cfg)
	n := tc.waitState("rotator", store.NodeReady)
	reports := func(signer *pki.CA, trusted int) {
		t.Helper()
		waitFor(t, fmt.Sprintf("the node on %d CAs, its certificate of %s", trusted, signer.Cert.Subject.CommonName), func() bool {
			trust, issuer, ok := srv.CAs(n.ID)
			caPEM, _ := os.ReadFile(filepath.Join(cfg.DataDir, "ca.pem"))
			cas, err := pki.ParseBundle(caPEM)
			return ok && trust == auth.TrustHash() && issuer == signer.Hash() && err == nil && len(cas) == trusted &&
				nodeCert(t, cfg.DataDir).CheckSignatureFrom(signer.Cert) == nil
		})
	}
	reports(oldCA, 1)
	auth.Set(oldCA, newCA.Cert)
	reports(oldCA, 2)
	auth.Set(newCA, oldCA.Cert)
	certs.Set(*pki.NewHolder(serverCert(t, newCA)).Get())
	reports(newCA, 2)
	auth.Set(newCA)
	reports(newCA, 1)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	runAgent(t, cfg)
	waitFor(t, "a new connection on the new CA alone", func() bool {
		cur := tc.nodeByName("rotator")
		return cur.State == store.NodeReady && cur.Epoch > n.Epoch
	})
}

func serverCert(t *testing.T, ca *pki.CA) tls.Certificate {
	t.Helper()
	leaf, err := ca.IssueServer("s1", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := leaf.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// --sim 50: fifty simulated nodes, each with its own identity and its own
// TLS connection.
func TestSim50(t *testing.T) {
	tc := newTestCluster(t)
	srv := tc.listen("s1", cluster.Config{})
	const n = 50
	var mu sync.Mutex
	setups := map[string]*nodelink.Mux{}
	base := agent.Config{Servers: []string{srv.Addr().String()}, Token: tc.token(n, time.Time{}),
		DataDir: t.TempDir(), Name: "sim", MaxBackoff: 200 * time.Millisecond,
		Setup: func(_ context.Context, id string, mux *nodelink.Mux) (agent.Hooks, error) {
			mu.Lock()
			defer mu.Unlock()
			setups[id] = mux
			return agent.Hooks{}, nil
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.RunSim(ctx, n, base) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sim: %v", err)
		}
	}()
	waitFor(t, "50 ready nodes", func() bool {
		nodes, _ := tc.Store.Snapshot().Nodes()
		ready := 0
		for _, nd := range nodes {
			if nd.State == store.NodeReady {
				ready++
			}
		}
		return ready == n && len(srv.Nodes()) == n
	})
	nodes, _ := tc.Store.Snapshot().Nodes()
	remotes := map[string]bool{}
	for _, nd := range nodes {
		if nd.Capacity != (store.NodeCapacity{CPUs: 16, MemoryMB: 65536, DiskMB: 1 << 20}) {
			t.Errorf("node %s capacity %+v", nd.Name, nd.Capacity)
		}
		s, ok := srv.Session(nd.ID)
		if !ok {
			t.Fatalf("no session of node %s", nd.ID)
		}
		remotes[s.RemoteAddr().String()] = true
	}
	if len(remotes) != n {
		t.Fatalf("%d distinct server-side connections, want %d", len(remotes), n)
	}
	dirs, _ := filepath.Glob(filepath.Join(base.DataDir, "sim-*", "node.json"))
	if len(dirs) != n {
		t.Fatalf("%d identities on disk, want %d", len(dirs), n)
	}
	mu.Lock()
	muxes := map[*nodelink.Mux]bool{}
	for id, m := range setups {
		if _, err := tc.Store.Snapshot().Node(id); err != nil {
			t.Errorf("Setup of unknown node %s: %v", id, err)
		}
		muxes[m] = true
	}
	if len(setups) != n || len(muxes) != n {
		t.Errorf("Setup ran for %d nodes with %d muxes, want %d and %d", len(setups), len(muxes), n, n)
	}
	mu.Unlock()
}

// A node that connects with its certificate but says no hello is closed.
func TestNoHelloClosed(t *testing.T) {
	tc := newTestCluster(t)
	srv := tc.listen("s1", cluster.Config{HelloTimeout: 100 * time.Millisecond})
	cfg := agentConfig(t, srv, tc.token(1, time.Time{}), "mute")
	if _, err := agent.New(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	s, err := rawSession(t, srv.Addr().String(), nodeTLS(t, cfg.DataDir))
	if err != nil {
		t.Fatal(err)
	}
	<-s.Done()
	if n := tc.nodeByName("mute"); n.State != store.NodeDown || len(srv.Nodes()) != 0 {
		t.Fatalf("after no hello: %+v, sessions %v", n, srv.Nodes())
	}
}

// orphanNodes runs two agents, named stays and returns, on server s1 until
// both are ready, then stops s1 (which marks no node down) and the agents:
// the store still holds both as ready on s1. It returns the config of the
// second, to run it again, and its record as it was.
func orphanNodes(t *testing.T, tc *testCluster, stays, returns string) (agent.Config, *store.Node) {
	t.Helper()
	first := tc.listen("s1", cluster.Config{})
	tok := tc.token(2, time.Time{})
	gone := agentConfig(t, first, tok, stays)
	back := agentConfig(t, first, tok, returns)
	stopGone, stopBack := runAgent(t, gone), runAgent(t, back)
	tc.waitState(stays, store.NodeReady)
	before := tc.waitState(returns, store.NodeReady)
	first.Close()
	if err := errors.Join(stopGone(), stopBack()); err != nil {
		t.Fatal(err)
	}
	if n := tc.nodeByName(stays); n.State != store.NodeReady {
		t.Fatalf("after the server stopped: %+v", n)
	}
	return back, before
}

// reconnect runs the agent of cfg again, on srv alone, and waits for its
// hello there (a newer epoch than before's).
func reconnect(t *testing.T, tc *testCluster, cfg agent.Config, srv *cluster.Server, before *store.Node) {
	t.Helper()
	cfg.Token, cfg.Servers = "", []string{srv.Addr().String()}
	runAgent(t, cfg)
	waitFor(t, "node "+before.Name+" to say hello to "+srv.Addr().String(), func() bool {
		n := tc.nodeByName(before.Name)
		return n.State == store.NodeReady && n.Epoch > before.Epoch
	})
}

// A restarted server takes over the nodes the store says it held: one
// that does not come back within the TTL is marked down, one that does
// stays ready.
func TestRestartedServerAdoptsItsNodes(t *testing.T) {
	tc := newTestCluster(t)
	back, before := orphanNodes(t, tc, "gone", "back")
	restarted := tc.listen("s1", cluster.Config{HeartbeatTTL: 300 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond})
	reconnect(t, tc, back, restarted, before)
	tc.waitState("gone", store.NodeDown)
	if n := tc.nodeByName("back"); n.State != store.NodeReady {
		t.Fatalf("the node that came back: %+v", n)
	}
}

// fakeClock is a clock that moves only when the test says.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// Heartbeats keep a node ready: of two nodes that said hello at the same
// time, the one that heartbeats outlives the TTL and the silent one does
// not. The monitor judges both in one pass, so when the silent one is
// down the other one was judged at the same instant.
func TestHeartbeatsKeepReady(t *testing.T) {
	tc := newTestCluster(t)
	clock := &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	const ttl = 100 * time.Millisecond
	srv := tc.listen("s1", cluster.Config{HeartbeatTTL: ttl, Now: clock.Now})
	tok := tc.token(2, time.Time{})
	sessions := map[string]*nodelink.Session{}
	for _, name := range []string{"beating", "silent"} {
		cfg := agentConfig(t, srv, tok, name)
		if _, err := agent.New(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		s, err := rawSession(t, srv.Addr().String(), nodeTLS(t, cfg.DataDir))
		if err != nil {
			t.Fatal(err)
		}
		if err := hello(context.Background(), s, name); err != nil {
			t.Fatal(err)
		}
		sessions[name] = s
	}
	for range 4 {
		clock.Advance(ttl / 2)
		if err := sessions["beating"].Call(context.Background(), nodeproto.MethodHeartbeat, nodeproto.Heartbeat{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	tc.waitState("silent", store.NodeDown)
	if n := tc.nodeByName("beating"); n.State != store.NodeReady {
		t.Fatalf("the node that heartbeats: %+v", n)
	}
}

// A hello the servers refuse for good ends the agent's Run with the
// reason: a node whose record was removed, a node asking for another
// pool.
func TestHelloRefusalsStopTheAgent(t *testing.T) {
	tc := newTestCluster(t)
	srv := tc.listen("s1", cluster.Config{})
	tok := tc.token(2, time.Time{})
	removed := agentConfig(t, srv, tok, "removed")
	a, err := agent.New(context.Background(), removed)
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.Store.DeleteNode(context.Background(), a.NodeID()); err != nil {
		t.Fatal(err)
	}
	mover := agentConfig(t, srv, tok, "mover")
	if _, err := agent.New(context.Background(), mover); err != nil {
		t.Fatal(err)
	}
	mover.Pool = "gpu"
	for _, tt := range []struct {
		cfg  agent.Config
		kind errdefs.Kind
		msg  string
	}{
		{removed, errdefs.PermissionDenied, "is not registered (it was removed): join again with a token"},
		{mover, errdefs.FailedPrecondition, `is in pool "", not "gpu"`},
	} {
		t.Run(tt.cfg.Name, func(t *testing.T) {
			err := agent.Run(context.Background(), tt.cfg)
			if errdefs.KindOf(err) != tt.kind || err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("agent: %v, want %v %q", err, tt.kind, tt.msg)
			}
		})
	}
}

// An agent that lost the answer to its join and sends it again gets the
// same node, and the token is used once.
func TestRetriedJoinUsesTheTokenOnce(t *testing.T) {
	tc := newTestCluster(t)
	srv := tc.listen("s1", cluster.Config{})
	tok := tc.token(1, time.Time{})
	csr, _, _ := pki.NewCSR("x")
	req := nodeproto.JoinRequest{Token: tok, CSR: string(csr), Name: "retrier"}
	joinTLS := nodeproto.JoinTLSConfig(tc.CA.Hash())
	first := joinRaw(t, srv.Addr().String(), joinTLS, req)
	again := joinRaw(t, srv.Addr().String(), joinTLS, req)
	if first.Error != nil || again.Error != nil || first.NodeID == "" || again.NodeID != first.NodeID || again.Cert == "" {
		t.Fatalf("first %+v, again %+v", first, again)
	}
	// Another key on the used-up token is refused.
	other, _, _ := pki.NewCSR("y")
	req.CSR = string(other)
	if resp := joinRaw(t, srv.Addr().String(), joinTLS, req); resp.Error == nil || !strings.Contains(resp.Error.Message, "is used up") {
		t.Fatalf("another key: %+v", resp)
	}
	toks, _ := tc.Store.Snapshot().JoinTokens()
	nodes, _ := tc.Store.Snapshot().Nodes()
	if toks[0].Used != 1 || len(nodes) != 1 {
		t.Fatalf("token used %d times, %d nodes; want 1 and 1", toks[0].Used, len(nodes))
	}
}

// TestAgentMetrics: an agent's metrics follow its link: up with the node's
// sandboxes and certificate expiry, heartbeats timed, and down (a failure
// counted) once the server goes away.
func TestAgentMetrics(t *testing.T) {
	tc := newTestCluster(t)
	srv := tc.listen("s1", cluster.Config{HeartbeatInterval: 20 * time.Millisecond})
	cfg := agentConfig(t, srv, tc.token(1, time.Time{}), "metered")
	cfg.Metrics = agent.NewMetrics()
	cfg.Sandboxes = func() []string { return []string{"a", "b"} }
	reg := prometheus.NewRegistry()
	reg.MustRegister(cfg.Metrics.Collectors()...)
	runAgent(t, cfg)
	n := tc.waitState("metered", store.NodeReady)
	value := func(name string) (float64, bool) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				if h := m.GetHistogram(); h != nil {
					return float64(h.GetSampleCount()), true
				}
				for _, l := range m.GetLabel() {
					if l.GetName() == "node" && l.GetValue() == n.ID {
						if g := m.GetGauge(); g != nil {
							return g.GetValue(), true
						}
						return m.GetCounter().GetValue(), true
					}
				}
			}
		}
		return 0, false
	}
	waitFor(t, "link up and 3 heartbeats in the metrics", func() bool {
		up, _ := value("den_agent_link_up")
		beats, _ := value("den_agent_heartbeat_seconds")
		return up == 1 && beats >= 3
	})
	if v, _ := value("den_agent_link_connects_total"); v != 1 {
		t.Errorf("connects = %v, want 1", v)
	}
	if v, _ := value("den_agent_sandboxes"); v != 2 {
		t.Errorf("sandboxes = %v, want 2", v)
	}
	if v, _ := value("den_agent_certificate_expiry_timestamp_seconds"); v < float64(time.Now().Unix()) {
		t.Errorf("certificate expiry %v is not in the future", v)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "link down in the metrics", func() bool {
		up, _ := value("den_agent_link_up")
		fails, _ := value("den_agent_link_failures_total")
		return up == 0 && fails >= 1
	})
}

// A server joins with a server token: it gets a server certificate for
// its ID, the token counts one use (none for a retry of the same key),
// and no node is recorded. An agent token admits no server, and a server
// token no agent.
func TestServerJoin(t *testing.T) {
	tc := newTestCluster(t)
	srv := tc.listen("s1", cluster.Config{})
	addr, joinTLS := srv.Addr().String(), nodeproto.JoinTLSConfig(tc.CA.Hash())
	tok, err := nodeproto.NewToken(tc.CA.Hash())
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.Store.PutJoinToken(context.Background(), &store.JoinToken{ID: tok.ID, Hash: tok.SecretHash(), Uses: 1, Role: store.RoleServer}); err != nil {
		t.Fatal(err)
	}
	csr, key, _ := pki.NewCSR("s2")
	req := nodeproto.JoinRequest{Token: tok.String(), CSR: string(csr), Name: "s2", Role: nodeproto.RoleServer, Hosts: []string{"127.0.0.2"}}
	resp := joinRaw(t, addr, joinTLS, req)
	if resp.Error != nil {
		t.Fatalf("server join: %+v", resp.Error)
	}
	leaf, err := pki.NewLeaf([]byte(resp.Cert), key)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := pki.IdentityOf(leaf.Cert); err != nil || id.Role != pki.RoleServer || id.ID != "s2" {
		t.Fatalf("certificate identity %+v, %v", id, err)
	}
	if again := joinRaw(t, addr, joinTLS, req); again.Error != nil {
		t.Fatalf("a retry of the same server: %+v", again.Error)
	}
	csr3, _, _ := pki.NewCSR("s3")
	req3 := req
	req3.CSR, req3.Name = string(csr3), "s3"
	if r := joinRaw(t, addr, joinTLS, req3); r.Error == nil || !strings.Contains(r.Error.Message, "is used up") {
		t.Fatalf("a second server on a one-use token: %+v", r)
	}
	if nodes, _ := tc.Store.Snapshot().Nodes(); len(nodes) != 0 {
		t.Fatalf("a server join recorded %d nodes", len(nodes))
	}
	// An agent token presented by a server, and a server token by an agent.
	agentTok := tc.token(5, time.Time{})
	req3.Token = agentTok
	if r := joinRaw(t, addr, joinTLS, req3); r.Error == nil || !strings.Contains(r.Error.Message, "admits agents, not servers") {
		t.Fatalf("an agent token admitted a server: %+v", r)
	}
	tok2, _ := nodeproto.NewToken(tc.CA.Hash())
	if err := tc.Store.PutJoinToken(context.Background(), &store.JoinToken{ID: tok2.ID, Hash: tok2.SecretHash(), Uses: 1, Role: store.RoleServer}); err != nil {
		t.Fatal(err)
	}
	csr4, _, _ := pki.NewCSR("x")
	if r := joinRaw(t, addr, joinTLS, nodeproto.JoinRequest{Token: tok2.String(), CSR: string(csr4), Name: "agent"}); r.Error == nil || !strings.Contains(r.Error.Message, "admits servers, not agents") {
		t.Fatalf("a server token admitted an agent: %+v", r)
	}
}

// A server that gains the lead takes over the nodes another server held:
// one that never says hello to it is marked down after the TTL (its
// server died with it), one that moves to it stays ready.
func TestTakeOverMarksDownNodesOfADeadServer(t *testing.T) {
	tc := newTestCluster(t)
	moved, before := orphanNodes(t, tc, "lost", "moved")
	leader := tc.listen("s2", cluster.Config{HeartbeatTTL: 300 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond})
	time.Sleep(600 * time.Millisecond) // twice the TTL: s2 holds neither yet
	if n := tc.nodeByName("lost"); n.State != store.NodeReady {
		t.Fatalf("before the take-over s2 judged a node it never held: %+v", n)
	}
	if err := leader.TakeOver(); err != nil {
		t.Fatal(err)
	}
	reconnect(t, tc, moved, leader, before)
	tc.waitState("lost", store.NodeDown)
	if n := tc.nodeByName("moved"); n.State != store.NodeReady {
		t.Fatalf("the node that moved: %+v", n)
	}
}
