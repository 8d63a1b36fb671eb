package fleet

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/denhq/den/internal/agent"
	"github.com/denhq/den/internal/cluster"
	"github.com/denhq/den/internal/cluster/clustertest"
	"github.com/denhq/den/internal/driver/drivertest"
	"github.com/denhq/den/internal/driver/sim"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/node"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/noderpc"
	"github.com/denhq/den/internal/scheduler"
	"github.com/denhq/den/internal/store"
)

// simSetup runs a simulated node behind an agent's link.
func simSetup(_ context.Context, nodeID string, mux *nodelink.Mux) (agent.Hooks, error) {
	link := &noderpc.Link{}
	drv := sim.New()
	n, err := node.New(node.Config{ID: nodeID, Driver: drv, Images: simImages{}, Records: noderpc.RemoteRecords(link)})
	if err != nil {
		return agent.Hooks{}, err
	}
	noderpc.ServeNode(mux, n)
	return agent.Hooks{OnSession: link.Set, Close: func() { n.Close(); drv.Close() }}, nil
}

// TestAgentsJoinTheFleet runs real agents (mutual TLS, joins, hellos)
// with simulated nodes against a node listener whose hooks feed a fleet.
func TestAgentsJoinTheFleet(t *testing.T) {
	c := clustertest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mux := nodelink.NewMux()
	noderpc.ServeRecords(mux, c.Store)
	var srv *cluster.Server
	fl := New(Config{Store: c.Store, Sessions: func(id string) (*nodelink.Session, bool) { return srv.Session(id) }})
	fl.ServeStarts(mux)
	go fl.Run(ctx)
	srv = c.Listen("s1", cluster.Config{Mux: mux, OnConnect: fl.OnConnect, OnDisconnect: fl.OnDisconnect})
	token := c.Token(3, time.Time{})
	stops := map[string]func() error{}
	for i := range 3 {
		name := fmt.Sprintf("agent-%d", i)
		cfg := clustertest.AgentConfig(t, srv, token, name)
		cfg.Runtimes = []string{sim.Name}
		cfg.Setup = simSetup
		stops[name] = clustertest.RunAgent(t, cfg)
	}
	up := func() int {
		n := 0
		fl.Scheduler().Snapshot().EachNode(scheduler.SharedPool, func(ni scheduler.NodeInfo) bool {
			if ni.Node.Status == scheduler.NodeUp {
				n++
			}
			return true
		})
		return n
	}
	clustertest.WaitFor(t, "3 nodes up in the fleet", func() bool { fl.Scheduler().Commit(); return up() == 3 })

	create := func(id string) (*store.Sandbox, error) {
		sb := &store.Sandbox{ID: id, Tenant: "t", Image: "img", Runtime: sim.Name, CPUs: 0.25, MemoryMB: 256, DiskMB: 64,
			TimeoutSec: 600, CreatedAt: time.Now(), AccessToken: "tok"}
		undo, err := fl.Place(ctx, sb, 0)
		if err != nil {
			return nil, err
		}
		rec, err := fl.StartClaimed(ctx, sb, func(rec *store.Sandbox) error { return c.Store.CreateSandbox(ctx, rec) })
		if err != nil {
			undo()
			return nil, err
		}
		return rec, nil
	}
	on := map[string]int{}
	for i := range 6 {
		sb, err := create(fmt.Sprintf("sb-%d", i))
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		on[sb.Node]++
		res, err := drivertest.Exec(ctx, fl, sb.ID, "echo", "hi")
		if err != nil || res.Stdout != "hi\n" {
			t.Fatalf("exec in %s on %s: %+v %v", sb.ID, sb.Node, res, err)
		}
	}
	if len(on) == 0 {
		t.Fatal("nothing placed")
	}
	// Drain one node: new sandboxes avoid it.
	drained := c.NodeByName("agent-0")
	if err := c.Store.SetNodeDraining(ctx, drained.ID, true, time.Now()); err != nil {
		t.Fatal(err)
	}
	clustertest.WaitFor(t, "the drained node out of the scheduler", func() bool { return up() == 2 })
	for i := range 4 {
		sb, err := create(fmt.Sprintf("after-drain-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if sb.Node == drained.ID {
			t.Fatalf("%s placed on the drained node", sb.ID)
		}
	}
	// An agent that stops leaves: nothing new lands on it.
	gone := c.NodeByName("agent-1")
	if err := stops["agent-1"](); err != nil && !errdefs.Is(err, errdefs.Canceled) {
		t.Logf("agent-1 stopped: %v", err)
	}
	clustertest.WaitFor(t, "the stopped agent's node out of the scheduler", func() bool { return up() == 1 })
	for i := range 4 {
		sb, err := create(fmt.Sprintf("after-stop-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if sb.Node == gone.ID || sb.Node == drained.ID {
			t.Fatalf("%s placed on %s", sb.ID, sb.Node)
		}
	}
	if err := fl.Scheduler().Working().Check(); err != nil {
		t.Fatal(err)
	}
}
