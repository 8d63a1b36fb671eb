package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/localcluster"
)

// TestServerJoinsWithToken: a fourth server starts with an empty CA
// directory and a server join token. It gets its certificate with the
// token, joins raft, reads the cluster CA from the replicated state into
// its own CA directory, and signs an agent's certificate with it (the
// agent joins through that server's node listener). The token, of one
// use, admits no second server.
func TestServerJoinsWithToken(t *testing.T) {
	bin := serverBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := startServers(ctx, t, localcluster.Config{Bin: bin, Servers: 3})
	api := client(t, c.Servers[0])
	tok, err := api.CreateJoinToken(ctx, rest.CreateJoinTokenRequest{Role: rest.TokenRoleServer})
	if err != nil {
		t.Fatal(err)
	}
	s4, err := c.AddServer(ctx, tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	members, err := client(t, s4).ClusterMembers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range members.Members {
		found = found || m.ID == s4.ID
	}
	if len(members.Members) != 4 || !found {
		t.Fatalf("members after the token join: %+v", members.Members)
	}
	// Its CA directory now holds the cluster's CA, key included.
	for _, f := range []string{"ca.pem", "ca-key.pem"} {
		want, err := os.ReadFile(filepath.Join(filepath.Dir(s4.DataDir), "ca", f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(s4.DataDir, "ca", f))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s of the joined server: %v (equal to the cluster's: %v)", f, err, bytes.Equal(got, want))
		}
	}
	// An agent joins through the new server alone, which signs its
	// certificate; the node is recorded (it becomes ready once it reaches
	// the leader, which this agent is not told of).
	agentTok, err := api.CreateJoinToken(ctx, rest.CreateJoinTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	startAgents(t, exec.Command(bin, "agent", "--server", s4.NodeAddr,
		"--token", agentTok.Token, "--sim", "1", "--data-dir", t.TempDir()))
	// The leader's API lists the node as soon as the join commits; s4,
	// which forwarded the write, logs it once the answer is back.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		nodes, err := api.ListNodes(ctx)
		joined := strings.Contains(readLog(t, s4.LogPath), `msg="node joined"`)
		if err == nil && len(nodes) == 1 && joined {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no node joined through %s (logged there: %v): %v %+v", s4.ID, joined, err, nodes)
		}
	}
	// The token was for one server.
	if _, err := c.AddServer(ctx, tok.Token); err == nil || !strings.Contains(readLog(t, c.Servers[len(c.Servers)-1].LogPath), "is used up") {
		t.Fatalf("a second server joined with a one-use token (err %v)", err)
	}
}

func readLog(t *testing.T, path string) string {
	t.Helper()
	b, _ := os.ReadFile(path)
	return string(b)
}
