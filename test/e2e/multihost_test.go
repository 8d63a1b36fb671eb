package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/localcluster"
)

// TestMultiHostCluster: one den server and three den agents, each agent
// in a network namespace of its own that refuses every inbound
// connection, running real gVisor sandboxes. The agents dial out; the
// sandboxes spread over the three hosts; exec, files and suspend/resume
// work through the server to each.
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
		ExtraArgs: []string{"--node-listen", fmt.Sprintf("0.0.0.0:%d", ports)}})
	api := client(t, c.Servers[0])
	tok, err := api.CreateJoinToken(ctx, rest.CreateJoinTokenRequest{Uses: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		h := newHostNS(t, 200+i)
		data := filepath.Join(t.TempDir(), fmt.Sprintf("host%d", i))
		startAgents(t, h.command(bin, "agent", "--server", fmt.Sprintf("%s:%d", h.hostAddr, ports), "--token", tok.Token,
			"--name", fmt.Sprintf("host%d", i), "--data-dir", data, "--no-network", "--runtimes", "gvisor"))
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
