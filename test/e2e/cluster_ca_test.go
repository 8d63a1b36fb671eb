package e2e

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/localcluster"
	"github.com/denhq/den/internal/pki"
	"github.com/denhq/den/internal/store"
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

// TestClusterCARotation: `den ca rotate --wait` replaces the cluster CA of
// three servers and three simulated nodes while a sandbox runs. Each step
// waits for every server and node; afterwards every server's CA directory
// and every node's certificate are of the new CA, the old CA is trusted
// nowhere, and the links work on new handshakes (kill -9 of the leader
// moves the nodes to another server). A token made before the rotation is
// refused; one made after admits a node.
func TestClusterCARotation(t *testing.T) {
	bin := serverBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := startServers(ctx, t, localcluster.Config{Bin: bin, Servers: 3})
	leader, follower := leaderAndFollower(ctx, t, c)
	api := client(t, follower)
	tok, err := api.CreateJoinToken(ctx, rest.CreateJoinTokenRequest{Uses: 4})
	if err != nil {
		t.Fatal(err)
	}
	agentDir := t.TempDir()
	startAgents(t, exec.Command(bin, "agent", "--server", strings.Join(c.NodeAddrs(), ","), "--token", tok.Token,
		"--sim", "3", "--data-dir", agentDir))
	waitNodes(ctx, t, api, 3)
	sb, err := api.Create(ctx, rest.CreateSandboxRequest{Image: "busybox", Runtime: "sim"})
	if err != nil {
		t.Fatal(err)
	}
	before, err := api.ClusterCA(ctx)
	if err != nil || before.Phase != "stable" || before.Generation != 0 {
		t.Fatalf("the CA before a rotation: %+v, %v", before, err)
	}

	out, err := exec.Command(bin, "ca", "rotate", "--wait", "--timeout", "2m", "--url", follower.URL, "--api-key", follower.APIKey).CombinedOutput()
	if err != nil {
		t.Fatalf("den ca rotate --wait: %v\n%s", err, out)
	}
	for _, want := range []string{"phase trust", "phase sign", "phase stable"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("den ca rotate --wait showed no %q:\n%s", want, out)
		}
	}
	after, err := api.ClusterCA(ctx)
	if err != nil || after.Phase != "stable" || after.Generation != 3 || after.Signer.Hash == before.Signer.Hash || after.Previous != nil || after.RotatedAt == "" {
		t.Fatalf("the CA after the rotation: %+v, %v (before %s)", after, err, before.Signer.Hash)
	}
	// Every server keeps the new CA, and trusts nothing else.
	for _, s := range c.Servers {
		dir := filepath.Join(s.DataDir, "ca")
		if s.DataDir == "" || !fileExists(filepath.Join(dir, "ca.pem")) {
			dir = filepath.Join(filepath.Dir(s.DataDir), "ca")
		}
		if h := certFileHash(t, filepath.Join(dir, "ca.pem")); h != after.Signer.Hash {
			t.Fatalf("%s keeps CA %s, want %s", s.ID, h, after.Signer.Hash)
		}
		if fileExists(filepath.Join(dir, "ca-trusted.pem")) {
			t.Fatalf("%s still trusts another CA after the rotation", s.ID)
		}
	}
	// Every node's certificate is of the new CA, and its ca.pem holds it
	// alone.
	nodeCerts := 0
	filepath.WalkDir(agentDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch d.Name() {
		case "node.pem":
			nodeCerts++
			b, _ := os.ReadFile(p)
			cert, err := pki.ParseCert(b)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			caPEM, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "ca.pem"))
			cas, err := pki.ParseBundle(caPEM)
			if err != nil || len(cas) != 1 || pki.CertHash(cas[0]) != after.Signer.Hash || pki.IssuerHash(cert, cas) != after.Signer.Hash {
				t.Fatalf("%s after the rotation: trusts %d CAs (%v), issuer %q, want %s", p, len(cas), err, pki.IssuerHash(cert, cas), after.Signer.Hash)
			}
		}
		return nil
	})
	if nodeCerts != 3 {
		t.Fatalf("found %d node certificates under %s, want 3", nodeCerts, agentDir)
	}

	// New handshakes everywhere: the leader dies, the nodes move, the
	// sandbox still answers.
	c.Kill(leader)
	survivor := client(t, follower)
	waitNodesMoved(ctx, t, survivor, 3, leader.ID)
	if res, err := survivor.Sandbox(sb.ID).Run(ctx, "echo still here"); err != nil || string(res.Stdout) != "still here\n" {
		t.Fatalf("run after the rotation and the failover: %+v %v", res, err)
	}

	// The old token names the old CA: refused. A new one admits a node.
	var log bytes.Buffer
	old := exec.CommandContext(ctx, bin, "agent", "--server", strings.Join(c.NodeAddrs(), ","), "--token", tok.Token, "--sim", "1", "--data-dir", t.TempDir())
	old.Stdout, old.Stderr = &log, &log
	if err := old.Run(); err == nil || !strings.Contains(log.String(), "CA") {
		t.Fatalf("an agent with a token of the old CA: %v\n%s", err, tail(log.String(), 2000))
	}
	fresh, err := survivor.CreateJoinToken(ctx, rest.CreateJoinTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	startAgents(t, exec.Command(bin, "agent", "--server", strings.Join(c.NodeAddrs(), ","), "--token", fresh.Token, "--sim", "1", "--data-dir", t.TempDir()))
	waitNodes(ctx, t, survivor, 4)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func certFileHash(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.ParseCert(b)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return pki.CertHash(c)
}

// TestCARotationWaitsForEveryServer: a rotation does not go past a step a
// server has not taken. The leader is killed as the rotation begins: the
// rotation waits, naming it, and the new leader carries it to the end once
// the server is back.
func TestCARotationWaitsForEveryServer(t *testing.T) {
	bin := serverBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := startServers(ctx, t, localcluster.Config{Bin: bin, Servers: 3})
	leader, follower := leaderAndFollower(ctx, t, c)
	api := client(t, follower)
	before, err := api.ClusterCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The leader dies right after it wrote the first step: it cannot
	// have acknowledged it.
	if _, err := client(t, leader).RotateClusterCA(ctx, rest.CARotateBegin); err != nil {
		t.Fatal(err)
	}
	c.Kill(leader)
	var st *rest.ClusterCA
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		st, err = api.ClusterCA(ctx)
		if err == nil && st.Phase == store.CATrust && len(st.WaitingServers) == 1 && st.WaitingServers[0] == leader.ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rotation does not wait for the dead leader %s alone: %+v, %v", leader.ID, st, err)
		}
	}
	time.Sleep(3 * time.Second) // the new leader looks every second
	if st, err = api.ClusterCA(ctx); err != nil || st.Phase != store.CATrust || st.Generation != 1 {
		t.Fatalf("the rotation moved on without server %s: %+v, %v", leader.ID, st, err)
	}
	if err := c.Restart(ctx, leader); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		st, err = api.ClusterCA(ctx)
		if err == nil && st.Phase == "stable" && st.Generation == 3 && len(st.WaitingServers) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rotation did not finish once %s was back: %+v, %v", leader.ID, st, err)
		}
	}
	if st.Signer.Hash == before.Signer.Hash {
		t.Fatal("the rotation finished on the old CA")
	}
	// Every server answers through the cluster port on the new CA: a
	// write through each reaches the leader.
	for _, s := range c.Servers {
		if _, err := client(t, s).CreateJoinToken(ctx, rest.CreateJoinTokenRequest{}); err != nil {
			t.Fatalf("a write through %s after the rotation: %v", s.ID, err)
		}
	}
}

// leaderAndFollower finds c's leader and one of its followers.
func leaderAndFollower(ctx context.Context, t *testing.T, c *localcluster.Cluster) (leader, follower *localcluster.Server) {
	t.Helper()
	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range c.Servers {
		if s != leader {
			follower = s
		}
	}
	return leader, follower
}
