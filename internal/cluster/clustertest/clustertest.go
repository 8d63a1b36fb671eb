// Package clustertest runs a den cluster's control side in a test: a real
// store, a fresh CA and node listeners on loopback, with helpers to make
// join tokens, configure agents and wait for node states. Tests of what
// travels over the node link (sandbox operations) start here.
package clustertest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/denhq/den/internal/agent"
	"github.com/denhq/den/internal/cluster"
	"github.com/denhq/den/internal/nodeproto"
	"github.com/denhq/den/internal/pki"
	"github.com/denhq/den/internal/store"
)

// Cluster is a store and a CA that node listeners share.
type Cluster struct {
	t     testing.TB
	Store *store.Store
	CA    *pki.CA
}

// New opens a store in a temporary directory and makes a CA; both go
// away with the test.
func New(t testing.TB) *Cluster {
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
	return &Cluster{t: t, Store: st, CA: ca}
}

// Listen starts a node listener of server id on loopback; cfg's Listen,
// ServerID, Cert and Store are filled in, and CA unless set (an Authority
// of the cluster's CA); its other fields are kept.
// It is closed with the test.
func (c *Cluster) Listen(id string, cfg cluster.Config) *cluster.Server {
	c.t.Helper()
	leaf, err := c.CA.IssueServer(id, []string{"127.0.0.1"})
	if err != nil {
		c.t.Fatal(err)
	}
	cert, err := leaf.TLS()
	if err != nil {
		c.t.Fatal(err)
	}
	if cfg.CA == nil {
		cfg.CA = pki.NewAuthority(c.CA)
	}
	cfg.Listen, cfg.ServerID, cfg.Cert, cfg.Store = "127.0.0.1:0", id, cert, c.Store
	s, err := cluster.Listen(context.Background(), cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { s.Close() })
	return s
}

// Token records a join token of uses that expires at expires (zero:
// never) and returns it as den token create prints it.
func (c *Cluster) Token(uses int, expires time.Time) string {
	c.t.Helper()
	tok, err := nodeproto.NewToken(c.CA.Hash())
	if err != nil {
		c.t.Fatal(err)
	}
	err = c.Store.PutJoinToken(context.Background(), &store.JoinToken{ID: tok.ID, Hash: tok.SecretHash(), Uses: uses, ExpiresAt: expires})
	if err != nil {
		c.t.Fatal(err)
	}
	return tok.String()
}

// AgentConfig is the configuration of an agent named name that joins
// srv with token, its data in a temporary directory, 4 CPUs and 8 GiB.
func AgentConfig(t testing.TB, srv *cluster.Server, token, name string) agent.Config {
	return agent.Config{
		Servers: []string{srv.Addr().String()}, Token: token, DataDir: filepath.Join(t.TempDir(), name),
		Name: name, Capacity: nodeproto.Capacity{CPUs: 4, MemoryMB: 8192}, Runtimes: []string{"gvisor"},
		MaxBackoff: 200 * time.Millisecond,
	}
}

// RunAgent runs an agent until the returned stop is called, or the test
// ends; stop waits for it and returns its error.
func RunAgent(t testing.TB, cfg agent.Config) (stop func() error) {
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

// WaitFor polls cond until it holds, failing the test at a generous
// deadline (a guard against hangs, not a timing assertion).
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// NodeByName is the record of the node named name, nil when none.
func (c *Cluster) NodeByName(name string) *store.Node {
	nodes, err := c.Store.Snapshot().Nodes()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// WaitState waits until the node named name is in state and returns its
// record.
func (c *Cluster) WaitState(name, state string) *store.Node {
	c.t.Helper()
	var n *store.Node
	WaitFor(c.t, "node "+name+" "+state, func() bool {
		n = c.NodeByName(name)
		return n != nil && n.State == state
	})
	return n
}
