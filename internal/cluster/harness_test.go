package cluster_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/denhq/den/internal/agent"
	"github.com/denhq/den/internal/cluster"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/nodeproto"
	"github.com/denhq/den/internal/pki"
	"github.com/denhq/den/internal/store"
)

// testCluster is a store, a CA and node listeners on loopback: what a
// den server holds, without its API.
type testCluster struct {
	t     *testing.T
	store *store.Store
	ca    *pki.CA
}

func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir(), NodeID: "srv"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ca, err := pki.NewCA("den test CA")
	if err != nil {
		t.Fatal(err)
	}
	return &testCluster{t: t, store: st, ca: ca}
}

// listen starts a node listener of server id; cfg's zero fields are
// filled in.
func (tc *testCluster) listen(id string, cfg cluster.Config) *cluster.Server {
	tc.t.Helper()
	leaf, err := tc.ca.IssueServer(id, []string{"127.0.0.1"})
	if err != nil {
		tc.t.Fatal(err)
	}
	cfg.Listen, cfg.ServerID, cfg.CA, cfg.Cert, cfg.Store = "127.0.0.1:0", id, tc.ca, leaf, tc.store
	s, err := cluster.Listen(context.Background(), cfg)
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.t.Cleanup(func() { s.Close() })
	return s
}

// token records a join token of uses and returns it as printed.
func (tc *testCluster) token(uses int, expires time.Time) string {
	tc.t.Helper()
	tok, err := nodeproto.NewToken(tc.ca.Hash())
	if err != nil {
		tc.t.Fatal(err)
	}
	err = tc.store.PutJoinToken(context.Background(), &store.JoinToken{ID: tok.ID, Hash: tok.SecretHash(), Uses: uses, ExpiresAt: expires})
	if err != nil {
		tc.t.Fatal(err)
	}
	return tok.String()
}

func agentConfig(t *testing.T, srv *cluster.Server, token, name string) agent.Config {
	return agent.Config{
		Servers: []string{srv.Addr().String()}, Token: token, DataDir: filepath.Join(t.TempDir(), name),
		Name: name, Capacity: nodeproto.Capacity{CPUs: 4, MemoryMB: 8192}, Runtimes: []string{"gvisor"},
		MaxBackoff: 200 * time.Millisecond,
	}
}

// runAgent runs an agent until the returned stop is called (or the test
// ends); stop waits for it and returns its error.
func runAgent(t *testing.T, cfg agent.Config) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx, cfg) }()
	var err error
	stopped := false
	stop = func() error {
		if !stopped {
			cancel()
			err, stopped = <-done, true
		}
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// waitFor polls cond until it holds, failing the test at a generous
// deadline (a guard against hangs, not a timing assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nodeByName finds a node record by name.
func (tc *testCluster) nodeByName(name string) *store.Node {
	nodes, err := tc.store.Snapshot().Nodes()
	if err != nil {
		tc.t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// waitState waits until node name's record is in state.
func (tc *testCluster) waitState(name, state string) *store.Node {
	tc.t.Helper()
	var n *store.Node
	waitFor(tc.t, "node "+name+" "+state, func() bool {
		n = tc.nodeByName(name)
		return n != nil && n.State == state
	})
	return n
}

// nodeTLS is the mutual TLS of the node whose identity is in dir.
func nodeTLS(t *testing.T, dir string) *tls.Config {
	t.Helper()
	pair, err := os.ReadFile(filepath.Join(dir, "node.pem"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(pair, pair)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return pki.ClientConfig(pool, cert)
}

// nodeCert is the certificate in dir's node.pem.
func nodeCert(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	pair, err := os.ReadFile(filepath.Join(dir, "node.pem"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(pair)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rawSession opens a node link with tcfg without an agent: tests drive
// hello and heartbeats themselves.
func rawSession(t *testing.T, addr string, tcfg *tls.Config) (*nodelink.Session, error) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, tcfg)
	if err != nil {
		return nil, err
	}
	s, err := nodelink.Client(c, nodelink.NewMux(), nodelink.Options{})
	if err != nil {
		c.Close()
		return nil, err
	}
	t.Cleanup(func() { s.Close() })
	return s, nil
}

func hello(ctx context.Context, s *nodelink.Session, name string) error {
	return s.Call(ctx, nodeproto.MethodHello, nodeproto.Hello{Name: name, Capacity: nodeproto.Capacity{CPUs: 1, MemoryMB: 1024}}, nil)
}
