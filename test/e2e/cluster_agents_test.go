package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/denhq/den/api/envd/process"
	"github.com/denhq/den/api/envd/process/processconnect"
	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/localcluster"
	den "github.com/denhq/den/sdk/go"
)

// startAgents runs `den agent` (cmd) until t ends or stop is called; its
// log is printed if t fails.
func startAgents(t *testing.T, cmd *exec.Cmd) (stop func()) {
	t.Helper()
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-done
			}
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("den agent log:\n%s", tail(log.String(), 4000))
		}
	})
	return stop
}

// waitNodesMoved waits until cl lists n ready nodes connected to a server
// other than gone (a leader that was killed).
func waitNodesMoved(ctx context.Context, t *testing.T, cl *den.Client, n int, gone string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		nodes, err := cl.ListNodes(ctx)
		moved := 0
		for _, nd := range nodes {
			if nd.State == rest.NodeReady && nd.Cluster != nil && nd.Cluster.Server != gone {
				moved++
			}
		}
		if err == nil && moved == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the nodes did not move away from server %s: %d of %d moved, %v", gone, moved, n, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitNodes waits until cl lists n ready nodes, all connected to one
// server, and returns them.
func waitNodes(ctx context.Context, t *testing.T, cl *den.Client, n int) []rest.Node {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		nodes, err := cl.ListNodes(ctx)
		ready := 0
		servers := map[string]bool{}
		for _, nd := range nodes {
			if nd.State == rest.NodeReady && nd.Cluster != nil {
				ready++
				servers[nd.Cluster.Server] = true
			}
		}
		if err == nil && ready == n && len(servers) == 1 {
			return nodes
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %d ready nodes on one server: %d ready on %v, %v", n, ready, servers, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClusterRunsSandboxesOnAgents: three den servers, five simulated
// nodes of one den agent process that dial out to them. Sandboxes made
// through a follower are placed on the nodes (best fit, never over
// capacity), run commands, and survive kill -9 of the leader: the agents
// move to the new leader and the sandboxes keep answering.
func TestClusterRunsSandboxesOnAgents(t *testing.T) {
	bin := serverBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, leader, follower, nodes := startSimCluster(ctx, t, bin, 5, "--sim-cpus", "16", "--sim-memory-mb", "65536")
	api := client(t, follower)
	if nodes[0].Cluster.Server != leader.ID {
		t.Fatalf("the nodes are on %s, want the leader %s", nodes[0].Cluster.Server, leader.ID)
	}

	// Two 8-CPU sandboxes fill a 16-CPU node: ten fill the five.
	create := func(cl *den.Client) (*den.Sandbox, error) {
		return cl.Create(ctx, rest.CreateSandboxRequest{Image: "busybox", Runtime: "sim", CPUs: 8, MemoryMB: 1024, DiskMB: 256})
	}
	perNode := map[string]int{}
	var ids []string
	for i := range 10 {
		sb, err := create(api)
		if err != nil {
			t.Fatalf("create %d through a follower: %v", i, err)
		}
		ids = append(ids, sb.ID)
		perNode[sb.Node]++
		res, err := sb.Run(ctx, "echo hello from $HOSTNAME")
		if err != nil || res.Code != 0 || !strings.HasPrefix(string(res.Stdout), "hello from") {
			t.Fatalf("run in %s on %s: %+v %v", sb.ID, sb.Node, res, err)
		}
	}
	if len(perNode) != 5 {
		t.Fatalf("sandboxes by node: %v, want 2 on each of 5", perNode)
	}
	for n, k := range perNode {
		if k != 2 {
			t.Fatalf("node %s holds %d sandboxes of 8 CPUs on 16 CPUs", n, k)
		}
	}
	if _, err := create(api); !den.IsResourceExhausted(err) {
		t.Fatalf("an 11th sandbox on full nodes: %v, want resource_exhausted", err)
	}
	// One that may wait is parked, and placed when a delete frees room.
	waited := make(chan *den.Sandbox, 1)
	go func() {
		sb, err := api.Create(ctx, rest.CreateSandboxRequest{Image: "busybox", Runtime: "sim", CPUs: 8, MemoryMB: 1024, DiskMB: 256, CapacityWait: 60})
		if err != nil {
			t.Errorf("a create that may wait 60 s: %v", err)
		}
		waited <- sb
	}()
	waitMetric(ctx, t, leader.URL+"/metrics", `den_pool_parked_requests{pool="shared"} 1`)
	if err := api.Delete(ctx, ids[9]); err != nil {
		t.Fatal(err)
	}
	parked := <-waited
	if parked == nil {
		t.FailNow()
	}
	ids[9] = parked.ID

	// kill -9 of the leader: the agents move to the new one, which
	// rebuilds the placements from the store.
	c.Kill(leader)
	var survivor *den.Client
	for _, s := range c.Servers {
		if s != leader {
			survivor = client(t, s)
			break
		}
	}
	waitNodesMoved(ctx, t, survivor, 5, leader.ID)
	for _, id := range ids {
		res, err := survivor.Sandbox(id).Run(ctx, "echo still here")
		if err != nil || string(res.Stdout) != "still here\n" {
			t.Fatalf("run in %s after the failover: %+v %v", id, res, err)
		}
	}
	if _, err := create(survivor); !den.IsResourceExhausted(err) {
		t.Fatalf("after the failover the nodes are still full, but a create got: %v", err)
	}
	if err := survivor.Delete(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	sb, err := create(survivor)
	if err != nil {
		t.Fatalf("create into the freed room: %v", err)
	}
	ids[0] = sb.ID
	for _, id := range ids {
		if err := survivor.Delete(ctx, id); err != nil {
			t.Fatalf("delete %s: %v", id, err)
		}
	}
}

// TestClusterSpeaksE2B: den server answers E2B's control plane and its
// sandbox traffic, on the leader and through a follower, for sandboxes on
// agents' nodes.
func TestClusterSpeaksE2B(t *testing.T) {
	bin := serverBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, leader, follower, _ := startSimCluster(ctx, t, bin, 2)

	for _, s := range []*localcluster.Server{follower, leader} {
		if !regexp.MustCompile(`^e2b_[0-9a-f]{40}$`).MatchString(s.E2BKey) || !strings.HasPrefix(s.SandboxURL, "http://127.0.0.1:") {
			t.Fatalf("server %s printed E2B_API_KEY %q and E2B_SANDBOX_URL %q", s.ID, s.E2BKey, s.SandboxURL)
		}
		req, _ := http.NewRequestWithContext(ctx, "POST", s.URL+"/v2/sandboxes",
			strings.NewReader(`{"templateID":"busybox","envVars":{"GREETING":"hi"},"timeout":120}`))
		req.Header.Set("X-API-Key", s.E2BKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var sb struct{ SandboxID, EnvdAccessToken string }
		if err := json.Unmarshal(body, &sb); err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("E2B create on %s: HTTP %d %s, %v", s.ID, resp.StatusCode, body, err)
		}
		proc := processconnect.NewProcessClient(http.DefaultClient, s.SandboxURL,
			connect.WithProtoJSON(), connect.WithInterceptors(e2bEnvdHeaders{sb.SandboxID, sb.EnvdAccessToken}))
		stream, err := proc.Start(ctx, connect.NewRequest(&pb.StartRequest{
			Process: &pb.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", "echo hi from " + s.ID}}, // the sim guest runs echo, with no variables
		}))
		if err != nil {
			t.Fatal(err)
		}
		var out string
		ended := false
		for stream.Receive() {
			ev := stream.Msg().GetEvent()
			out += string(ev.GetData().GetStdout())
			ended = ended || ev.GetEnd() != nil
		}
		if err := stream.Err(); err != nil || !ended || out != "hi from "+s.ID+"\n" {
			t.Fatalf("E2B command through %s's sandbox traffic: stdout %q, ended %v, %v", s.ID, out, ended, err)
		}
		// E2B's own 404 for a sandbox that is not there.
		req, _ = http.NewRequestWithContext(ctx, "GET", s.URL+"/sandboxes/nosuchsandbox0000000", nil)
		req.Header.Set("X-API-Key", s.E2BKey)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("E2B get of an unknown sandbox on %s: HTTP %d, want 404", s.ID, resp.StatusCode)
		}
	}
}

// waitMetric waits until the Prometheus text at url has line want.
func waitMetric(ctx context.Context, t *testing.T, url, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, l := range strings.Split(string(body), "\n") {
				if l == want {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never showed %q (%v)", url, want, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startSimCluster starts three den servers and one den agent with n
// simulated nodes (agentArgs added to its flags), joined through a
// follower, and waits until the nodes are ready.
func startSimCluster(ctx context.Context, t *testing.T, bin string, n int, agentArgs ...string) (c *localcluster.Cluster, leader, follower *localcluster.Server, nodes []rest.Node) {
	t.Helper()
	c = startServers(ctx, t, localcluster.Config{Bin: bin, Servers: 3})
	leader, follower = leaderAndFollower(ctx, t, c)
	api := client(t, follower)
	tok, err := api.CreateJoinToken(ctx, rest.CreateJoinTokenRequest{Uses: n})
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"agent", "--server", strings.Join(c.NodeAddrs(), ","), "--token", tok.Token,
		"--sim", strconv.Itoa(n), "--data-dir", t.TempDir()}, agentArgs...)
	startAgents(t, exec.Command(bin, args...))
	return c, leader, follower, waitNodes(ctx, t, api, n)
}
