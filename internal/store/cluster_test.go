package store

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/denhq/den/internal/clustermux"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/pki"
)

// testServer is one clustered Store on loopback, with what it was opened
// with so a test can reopen it.
type testServer struct {
	id, dir, addr string
	cfg           Config
	store         *Store
}

// clusterTLS returns the server and client TLS configurations of server
// id, certified by ca.
func clusterTLS(t testing.TB, ca *pki.CA, id string) (server, client *tls.Config) {
	t.Helper()
	leaf, err := ca.IssueServer(id, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := leaf.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return ca.ServerConfig(cert, pki.RoleServer), pki.ClientConfig(ca.Pool(), cert)
}

// newTestServer binds a loopback cluster port and returns the Config of a
// server id on it (not yet opened).
func newTestServer(t testing.TB, ca *pki.CA, id string, expect int, join []string) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srvTLS, cliTLS := clusterTLS(t, ca, id)
	ts := &testServer{id: id, dir: filepath.Join(t.TempDir(), id), addr: ln.Addr().String()}
	ts.cfg = Config{Dir: ts.dir, NodeID: id, Logger: testLogger(t, id), Cluster: &ClusterConfig{
		Listener: ln, Advertise: ts.addr, ServerTLS: srvTLS, ClientTLS: cliTLS,
		BootstrapExpect: expect, Join: join,
	}}
	return ts
}

func (ts *testServer) open(ctx context.Context) error {
	s, err := Open(ctx, ts.cfg)
	ts.store = s
	return err
}

func (ts *testServer) close(t testing.TB) {
	if ts.store == nil {
		return
	}
	if err := ts.store.Close(); err != nil {
		t.Errorf("close %s: %v", ts.id, err)
	}
	ts.store = nil
}

func clusterCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startCluster opens n servers with BootstrapExpect n, each joining the
// others, concurrently (each waits for the others to bootstrap).
func startCluster(t testing.TB, ca *pki.CA, n int, all *[]*testServer) []*testServer {
	t.Helper()
	var servers []*testServer
	if all == nil {
		all = &servers
	}
	var addrs []string
	for i := range n {
		ts := newTestServer(t, ca, fmt.Sprintf("s%d", i+1), n, nil)
		servers = append(servers, ts)
		addrs = append(addrs, ts.addr)
	}
	ctx := clusterCtx(t)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, ts := range servers {
		ts.cfg.Cluster.Join = addrs
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = ts.open(ctx) }()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, ts := range *all {
			ts.close(t)
		}
	})
	*all = servers
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %s: %v", servers[i].id, err)
		}
	}
	return servers
}

// leaderOf returns the server that leads, as server 0 sees it.
func leaderOf(t testing.TB, servers []*testServer) (leader *testServer, followers []*testServer) {
	t.Helper()
	for _, ts := range servers {
		if ts.store == nil {
			continue
		}
		ms, err := ts.store.Members()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Leader {
				for _, o := range servers {
					if o.id == m.ID {
						leader = o
					} else if o.store != nil {
						followers = append(followers, o)
					}
				}
				return leader, followers
			}
		}
	}
	t.Fatal("no server knows a leader")
	return nil, nil
}

// waitTenant polls s until it has tenant id (replication is asynchronous
// to followers that did not take the write).
func waitTenant(t testing.TB, s *Store, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := s.Snapshot().Tenant(id); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tenant %s never replicated", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClusterFormsForwardsAndFailsOver(t *testing.T) {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	var servers []*testServer // all servers, closed at cleanup
	startCluster(t, ca, 3, &servers)
	ctx := clusterCtx(t)

	t.Run("members", func(t *testing.T) {
		ms, err := servers[0].store.Members()
		if err != nil {
			t.Fatal(err)
		}
		leaders := 0
		for _, m := range ms {
			if !m.Voter {
				t.Errorf("member %s is not a voter", m.ID)
			}
			if m.Leader {
				leaders++
			}
		}
		if len(ms) != 3 || leaders != 1 {
			t.Fatalf("members = %+v, want 3 with one leader", ms)
		}
	})

	_, followers := leaderOf(t, servers)
	f := followers[0]
	t.Run("write on a follower is read there at once and replicates", func(t *testing.T) {
		if err := f.store.PutTenant(ctx, &Tenant{ID: "acme", CreatedAt: base}); err != nil {
			t.Fatalf("PutTenant on follower %s: %v", f.id, err)
		}
		if _, err := f.store.Snapshot().Tenant("acme"); err != nil {
			t.Fatalf("follower %s does not read its own write: %v", f.id, err)
		}
		for _, ts := range servers {
			waitTenant(t, ts.store, "acme")
		}
	})

	t.Run("another follower sees the write after CatchUp", func(t *testing.T) {
		other := followers[1]
		if err := f.store.PutTenant(ctx, &Tenant{ID: "beta", CreatedAt: base}); err != nil {
			t.Fatal(err)
		}
		caught, err := other.store.CatchUp(ctx)
		if err != nil || !caught {
			t.Fatalf("CatchUp on follower %s = %v, %v; want true, nil", other.id, caught, err)
		}
		if _, err := other.store.Snapshot().Tenant("beta"); err != nil {
			t.Fatalf("follower %s after CatchUp: %v", other.id, err)
		}
		leader, _ := leaderOf(t, servers)
		if caught, err := leader.store.CatchUp(ctx); caught || err != nil {
			t.Fatalf("CatchUp on the leader = %v, %v; want false, nil", caught, err)
		}
	})

	t.Run("AlreadyExists crosses the forward", func(t *testing.T) {
		if err := f.store.CreateSandbox(ctx, newSandbox("sb-1", "acme", "", base)); err != nil {
			t.Fatal(err)
		}
		err := f.store.CreateSandbox(ctx, newSandbox("sb-1", "acme", "", base))
		if !errdefs.Is(err, errdefs.AlreadyExists) || err.Error() != "sandbox sb-1 already exists" {
			t.Fatalf("second create on follower = %v (kind %v), want already_exists \"sandbox sb-1 already exists\"", err, errdefs.KindOf(err))
		}
	})

	t.Run("a fourth server joins", func(t *testing.T) {
		s4 := newTestServer(t, ca, "s4", 0, []string{servers[1].addr})
		if err := s4.open(ctx); err != nil {
			t.Fatalf("open s4 with Join: %v", err)
		}
		servers = append(servers, s4) // closed by startCluster's cleanup
		if _, err := s4.store.Snapshot().Tenant("acme"); err != nil {
			t.Fatalf("s4 has not caught up when Open returns: %v", err)
		}
		ms, err := s4.store.Members()
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != 4 {
			t.Fatalf("members after join = %+v, want 4", ms)
		}
		if err := s4.store.PutTenant(ctx, &Tenant{ID: "from-s4", CreatedAt: base}); err != nil {
			t.Fatalf("write on the joined server: %v", err)
		}
	})

	t.Run("a write succeeds after the leader dies", func(t *testing.T) {
		leader, rest := leaderOf(t, servers)
		leader.close(t)
		if err := rest[0].store.PutTenant(ctx, &Tenant{ID: "after-failover", CreatedAt: base}); err != nil {
			t.Fatalf("write on %s after closing leader %s: %v", rest[0].id, leader.id, err)
		}
		newLeader, _ := leaderOf(t, rest)
		if newLeader == nil || newLeader.id == leader.id {
			t.Fatalf("new leader = %v, want one of the survivors", newLeader)
		}
		for _, ts := range rest {
			waitTenant(t, ts.store, "after-failover")
		}

		t.Run("the old leader restarts on its state and rejoins", func(t *testing.T) {
			ln, err := net.Listen("tcp", leader.addr)
			if err != nil {
				t.Fatalf("rebind %s: %v", leader.addr, err)
			}
			leader.cfg.Cluster.Listener = ln
			leader.cfg.Cluster.Join = nil // raft knows its peers
			if err := leader.open(ctx); err != nil {
				t.Fatalf("reopen %s: %v", leader.id, err)
			}
			if _, err := leader.store.Snapshot().Tenant("after-failover"); err != nil {
				t.Fatalf("%s has not caught up when Open returns: %v", leader.id, err)
			}
			if err := leader.store.PutTenant(ctx, &Tenant{ID: "after-restart", CreatedAt: base}); err != nil {
				t.Fatalf("write on the restarted %s: %v", leader.id, err)
			}
		})
	})
}

func TestClusterRejectsForeignCertificates(t *testing.T) {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	servers := startCluster(t, ca, 1, nil)
	target := servers[0].addr

	other, err := pki.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	_, foreignTLS := clusterTLS(t, other, "intruder")
	nodeTLS := nodeClientTLS(t, ca, "n1")

	for _, tc := range []struct {
		name string
		conf *tls.Config
	}{
		{"server certificate of another CA", foreignTLS},
		{"node certificate of the cluster CA", nodeTLS},
	} {
		t.Run(tc.name+" cannot speak raft", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := clustermux.Dial(ctx, target, clustermux.ProtoRaft, tc.conf)
			if err == nil {
				// TLS 1.3: the server's refusal of the client
				// certificate arrives on the first read.
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err = c.Read(make([]byte, 1))
				c.Close()
			}
			if err == nil {
				t.Fatal("the cluster port accepted the connection")
			}
		})
		t.Run(tc.name+" cannot join", func(t *testing.T) {
			ts := newTestServer(t, ca, "joiner", 0, []string{target})
			ts.cfg.Cluster.ClientTLS = tc.conf
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			err := ts.open(ctx)
			if err == nil {
				ts.close(t)
				t.Fatal("Open joined the cluster")
			}
			if !errdefs.Is(err, errdefs.Unavailable) {
				t.Errorf("Open = %v (kind %v), want unavailable", err, errdefs.KindOf(err))
			}
			ms, err := servers[0].store.Members()
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != 1 {
				t.Errorf("members = %+v, want only s1", ms)
			}
		})
	}
}

// nodeClientTLS is a client configuration presenting a node certificate
// of ca (an agent's), as if a node tried the servers' cluster port.
func nodeClientTLS(t testing.TB, ca *pki.CA, id string) *tls.Config {
	t.Helper()
	csr, key, err := pki.NewCSR(id)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.SignNode(csr, id)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := pki.NewLeaf(certPEM, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := leaf.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return pki.ClientConfig(ca.Pool(), cert)
}

func TestClusterConfigValidate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ok := ClusterConfig{Listener: ln, Advertise: "127.0.0.1:7301", ServerTLS: &tls.Config{}, ClientTLS: &tls.Config{}, BootstrapExpect: 3}
	for _, tc := range []struct {
		name   string
		change func(*ClusterConfig)
		want   string
	}{
		{"even bootstrap", func(c *ClusterConfig) { c.BootstrapExpect = 2 }, "store cluster config: BootstrapExpect must be 1, 3 or 5, got 2"},
		{"nothing to form or join", func(c *ClusterConfig) { c.BootstrapExpect = 0 }, "store cluster config: set BootstrapExpect to form a cluster, or Join to join one"},
		{"bad advertise", func(c *ClusterConfig) { c.Advertise = "host" }, `store cluster config: Advertise "host" is not host:port`},
		{"bad join", func(c *ClusterConfig) { c.Join = []string{"x"} }, `store cluster config: Join address "x" is not host:port`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.change(&c)
			err := Config{Dir: "d", NodeID: "n", Cluster: &c}.Validate()
			if err == nil || err.Error() != tc.want {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
	if err := (Config{Dir: "d", NodeID: "n", Cluster: &ok}).Validate(); err != nil {
		t.Fatalf("Validate(valid) = %v", err)
	}
}

// testLogger logs to the test's log when DEN_TEST_LOG is set.
func testLogger(t testing.TB, id string) *slog.Logger {
	if os.Getenv("DEN_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("server", id)
}

// TestClusterWriteWithoutQuorum: with two of three servers gone a write
// waits LeaderWait, then fails Unavailable saying why.
func TestClusterWriteWithoutQuorum(t *testing.T) {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	servers := startCluster(t, ca, 3, nil)
	leader, followers := leaderOf(t, servers)
	survivor := followers[0]
	survivor.cfg.Cluster.LeaderWait = 2 * time.Second // the store reads it per write
	leader.close(t)
	followers[1].close(t)

	err = survivor.store.PutTenant(clusterCtx(t), &Tenant{ID: "lost", CreatedAt: base})
	want := "put_tenant: no raft leader was elected within 2s: are a majority of the servers up and reachable on their cluster ports? (den server members)"
	if !errdefs.Is(err, errdefs.Unavailable) || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("write without quorum = %v (kind %v), want unavailable starting %q", err, errdefs.KindOf(err), want)
	}
	if _, err := survivor.store.Snapshot().Tenant("lost"); err == nil {
		t.Fatal("the write without quorum was applied")
	}
}

// TestClusterAPIConnectionWaitsForItsHandler: a follower may pass a
// request to a leader whose store is open but whose HTTP handler has not
// yet taken the API listener (it starts after the store); the connection
// waits for the handler instead of being closed (an EOF the follower
// would report as 503).
func TestClusterAPIConnectionWaitsForItsHandler(t *testing.T) {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	servers := startCluster(t, ca, 1, nil)
	_, cliTLS := clusterTLS(t, ca, "s2")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := clustermux.Dial(ctx, servers[0].addr, clustermux.ProtoAPI, cliTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /ping HTTP/1.1\r\nHost: leader\r\nConnection: close\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	// Give the mux time to route the connection before anyone listens.
	time.Sleep(200 * time.Millisecond)
	ln := servers[0].store.ClusterListener(clustermux.ProtoAPI)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "pong") })}
	go srv.Serve(ln)
	defer srv.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("the connection that came before the handler: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "pong" {
		t.Fatalf("got %d %q, want 200 pong", resp.StatusCode, body)
	}
}
