package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/localcluster"
	den "github.com/denhq/den/sdk/go"
)

// TestMultiHostCluster: one den server and three den agents, each agent
// in a network namespace of its own that refuses every inbound
// connection, running real gVisor sandboxes. The agents dial out; the
// sandboxes spread over the three hosts; exec, files and suspend/resume
// work through the server to each. A restarted agent reattaches its
// sandbox; a host cut off the network is marked down and its sandbox
// reported lost, and it comes back when the network does.
func TestMultiHostCluster(t *testing.T) {
	bin := denBin(t) // root, runsc and den-guest next to den
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	ports, err := freeTCPPort()
	if err != nil {
		t.Fatal(err)
	}
	c := startServers(ctx, t, localcluster.Config{Bin: bin, Servers: 1,
		// Every address, so that the host namespaces reach it over their veths.
		ExtraArgs: []string{"--node-listen", fmt.Sprintf("0.0.0.0:%d", ports), "--heartbeat-ttl", "5s"}})
	api := client(t, c.Servers[0])
	tok, err := api.CreateJoinToken(ctx, rest.CreateJoinTokenRequest{Uses: 3})
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]hostNS{}
	agentArgs := map[string][]string{}
	stops := map[string]func(){}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("host%d", i)
		h := newHostNS(t, 200+i)
		hosts[name] = h
		agentArgs[name] = []string{"agent", "--server", fmt.Sprintf("%s:%d", h.hostAddr, ports),
			"--name", name, "--data-dir", filepath.Join(t.TempDir(), name), "--no-network", "--runtimes", "gvisor"}
		stops[name] = startAgents(t, h.command(bin, append(agentArgs[name], "--token", tok.Token)...))
	}
	nodes := waitNodes(ctx, t, api, 3)
	cpus := nodes[0].Cluster.CPUs

	// Each sandbox takes a whole host's CPUs: three land on three hosts.
	perNode := map[string]string{}
	for i := range 3 {
		sb, err := api.Create(ctx, rest.CreateSandboxRequest{Image: "busybox", CPUs: cpus, MemoryMB: 256})
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		t.Cleanup(func() { api.Delete(context.Background(), sb.ID) })
		if prev, dup := perNode[sb.Node]; dup {
			t.Fatalf("%s and %s both on %s", prev, sb.ID, sb.Node)
		}
		perNode[sb.Node] = sb.ID
		res, err := sb.Run(ctx, "dmesg | head -1; echo node "+sb.Node)
		if err != nil || res.Code != 0 || !strings.Contains(string(res.Stdout), "node "+sb.Node) {
			t.Fatalf("run in %s on %s: %+v %v", sb.ID, sb.Node, res, err)
		}
		if !strings.Contains(string(res.Stdout), "gVisor") {
			t.Fatalf("sandbox %s does not run on gVisor: %q", sb.ID, res.Stdout)
		}
		body := fmt.Sprintf("written to %s on %s\n", sb.ID, sb.Node)
		if err := sb.WriteFile(ctx, "/tmp/note", strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		r, err := sb.ReadFile(ctx, "/tmp/note")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(r)
		r.Close()
		if string(got) != body {
			t.Fatalf("read back %q, want %q", got, body)
		}
	}
	if len(perNode) != 3 {
		t.Fatalf("sandboxes by node: %v", perNode)
	}

	// Suspend and resume one, through the server, on its host.
	for _, id := range perNode {
		sb, err := api.Suspend(ctx, id)
		if err != nil {
			t.Fatalf("suspend %s: %v", id, err)
		}
		if sb.State != rest.StateSuspended {
			t.Fatalf("after suspend %s is %s", id, sb.State)
		}
		if sb, err = api.Resume(ctx, id); err != nil || sb.State != rest.StateRunning {
			t.Fatalf("resume %s: %+v %v", id, sb, err)
		}
		r, err := sb.ReadFile(ctx, "/tmp/note")
		if err != nil {
			t.Fatalf("read after resume: %v", err)
		}
		got, _ := io.ReadAll(r)
		r.Close()
		if !strings.HasPrefix(string(got), "written to "+id) {
			t.Fatalf("after resume /tmp/note is %q", got)
		}
		break
	}

	nameOf := map[string]string{} // node ID -> host name
	for _, nd := range waitNodes(ctx, t, api, 3) {
		nameOf[nd.ID] = nd.Cluster.Name
	}
	// Restart an agent: it comes back with its identity (no token) and
	// reattaches its running sandbox.
	var restartedNode string
	for n := range perNode {
		restartedNode = n
		break
	}
	host := nameOf[restartedNode]
	stops[host]()
	stops[host] = startAgents(t, hosts[host].command(bin, agentArgs[host]...))
	deadline := time.Now().Add(60 * time.Second)
	for {
		// Unavailable until the restarted agent's session is up.
		res, err := api.Sandbox(perNode[restartedNode]).Run(ctx, "cat /tmp/note")
		if err == nil && strings.HasPrefix(string(res.Stdout), "written to") {
			break
		}
		if time.Now().After(deadline) || (err != nil && !den.IsUnavailable(err)) {
			t.Fatalf("the sandbox of the restarted agent on %s: %+v %v", host, res, err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Cut another host off the network: after the heartbeat TTL its node is
	// down and its sandbox failed (reported lost, not moved); healed, the
	// node is ready again and the lost sandbox can be removed.
	var cutNode string
	for n := range perNode {
		if n != restartedNode {
			cutNode = n
			break
		}
	}
	link := fmt.Sprintf("denhost%d", 200+int(nameOf[cutNode][len("host")]-'0'))
	setLink(t, link, false)
	waitState := func(id, want string) *den.Sandbox {
		deadline := time.Now().Add(60 * time.Second)
		for {
			sb, err := api.Get(ctx, id)
			if err == nil && sb.State == want {
				return sb
			}
			if time.Now().After(deadline) {
				t.Fatalf("sandbox %s: %+v %v, want state %s", id, sb, err, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	lost := waitState(perNode[cutNode], rest.StateFailed)
	if !strings.Contains(lost.Reason, "node lost") {
		t.Fatalf("the cut host's sandbox failed with %q, want node lost", lost.Reason)
	}
	setLink(t, link, true)
	waitNodes(ctx, t, api, 3)
	// Back on the network, the node stops what the cluster gave up on.
	deadline = time.Now().Add(60 * time.Second)
	for runscOf(t, lost.ID) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the lost sandbox %s still runs on %s after the node came back", lost.ID, nameOf[cutNode])
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Its record stays, failed, until it is deleted.
	deadline = time.Now().Add(60 * time.Second)
	for {
		err := api.Delete(ctx, lost.ID)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("remove the lost sandbox: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The others, while every agent runs (the cleanups stop the agents
	// started last first).
	for n, id := range perNode {
		if n != cutNode {
			if err := api.Delete(ctx, id); err != nil {
				t.Fatalf("delete %s: %v", id, err)
			}
		}
	}
}

// runscOf counts the runsc processes of sandbox id.
func runscOf(t *testing.T, id string) int {
	t.Helper()
	out, _ := exec.Command("pgrep", "-f", "runsc.*"+id).Output()
	return len(strings.Fields(string(out)))
}

// setLink sets a host-side veth up or down.
func setLink(t *testing.T, name string, up bool) {
	t.Helper()
	l, err := netlink.LinkByName(name)
	must(t, err)
	if up {
		must(t, netlink.LinkSetUp(l))
	} else {
		must(t, netlink.LinkSetDown(l))
	}
}

// freeTCPPort is a port free on every address now.
func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
