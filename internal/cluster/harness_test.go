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
	"github.com/denhq/den/internal/cluster/clustertest"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/nodeproto"
	"github.com/denhq/den/internal/pki"
	"github.com/denhq/den/internal/store"
)

// testCluster is clustertest's Cluster under the names these tests use.
type testCluster struct{ *clustertest.Cluster }

func newTestCluster(t *testing.T) *testCluster { return &testCluster{clustertest.New(t)} }

func (tc *testCluster) listen(id string, cfg cluster.Config) *cluster.Server {
	return tc.Listen(id, cfg)
}

func (tc *testCluster) token(uses int, expires time.Time) string { return tc.Token(uses, expires) }

func (tc *testCluster) nodeByName(name string) *store.Node { return tc.NodeByName(name) }

func (tc *testCluster) waitState(name, state string) *store.Node { return tc.WaitState(name, state) }

func agentConfig(t *testing.T, srv *cluster.Server, token, name string) agent.Config {
	return clustertest.AgentConfig(t, srv, token, name)
}

func runAgent(t *testing.T, cfg agent.Config) (stop func() error) {
	return clustertest.RunAgent(t, cfg)
}

func waitFor(t *testing.T, what string, cond func() bool) { clustertest.WaitFor(t, what, cond) }

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
