package daemon

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/denhq/den/internal/cluster"
	"github.com/denhq/den/internal/nodeproto"
	"github.com/denhq/den/internal/pki"
	"github.com/denhq/den/internal/store"
)

// den agent --sim 3 against a node listener: three nodes join with one
// three-use token and become ready with the simulated capacity.
func TestAgentCommandSim(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir(), NodeID: "srv"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ca, _ := pki.NewCA("test")
	leaf, _ := ca.IssueServer("s1", []string{"127.0.0.1"})
	cert, _ := leaf.TLS()
	srv, err := cluster.Listen(ctx, cluster.Config{Listen: "127.0.0.1:0", ServerID: "s1", CA: pki.NewAuthority(ca), Cert: cert, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	tok, _ := nodeproto.NewToken(ca.Hash())
	if err := st.PutJoinToken(ctx, &store.JoinToken{ID: tok.ID, Hash: tok.SecretHash(), Uses: 3}); err != nil {
		t.Fatal(err)
	}
	cmd := AgentCommand("test")
	cmd.Flags().String("data-dir", t.TempDir(), "")
	var stderr bytes.Buffer
	cmd.SetErr(&stderr)
	cmd.SetArgs([]string{"--server", srv.Addr().String(), "--token", tok.String(), "--sim", "3", "--sim-cpus", "8", "--name", "rack", "--labels", "zone=a"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		nodes, _ := st.Snapshot().Nodes()
		ready := 0
		for _, n := range nodes {
			if n.State == store.NodeReady && n.Capacity.CPUs == 8 && n.Capacity.MemoryMB == 65536 && n.Labels["zone"] == "a" {
				ready++
			}
		}
		if ready == 3 && len(nodes) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for 3 ready simulated nodes: %d of %d\n%s", ready, len(nodes), stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("den agent: %v", err)
	}
}
