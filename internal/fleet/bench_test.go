package fleet

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/drivertest"
	"github.com/denhq/den/internal/driver/sim"
	"github.com/denhq/den/internal/node"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/nodelink/linktest"
	"github.com/denhq/den/internal/noderpc"
	"github.com/denhq/den/internal/scheduler"
	"github.com/denhq/den/internal/store"
)

// simImages resolves every image to an empty one: the simulator reads none.
type simImages struct{}

func (simImages) Rootfs(ref string) (driver.Image, error) { return driver.Image{Ref: ref}, nil }

// joinSim connects a simulated node id over a link.
func (e *env) joinSim(b testing.TB, id string, capacity scheduler.Resources) {
	serverMux, agentMux := nodelink.NewMux(), nodelink.NewMux()
	noderpc.ServeRecords(serverMux, e.st)
	e.fleet.ServeStarts(serverMux)
	serverEnd, agentEnd := linktest.Connect(b, serverMux, agentMux, id)
	link := &noderpc.Link{}
	link.Set(agentEnd)
	drv := sim.New()
	n, err := node.New(node.Config{ID: id, Driver: drv, Images: simImages{}, Records: noderpc.RemoteRecords(link)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close(); drv.Close() })
	noderpc.ServeNode(agentMux, n)
	e.mu.Lock()
	e.sessions[id] = serverEnd
	e.mu.Unlock()
	if err := e.fleet.Join(context.Background(), NodeSpec{ID: id, Capacity: capacity}); err != nil {
		b.Fatal(err)
	}
}

// simFleet is a fleet over st with n simulated nodes of unbounded capacity.
func simFleet(b testing.TB, st *store.Store, n int) *env {
	e := fleetEnv(st)
	for i := range n {
		e.joinSim(b, fmt.Sprintf("sim-%d", i), scheduler.Resources{CPUMillis: 1 << 40, MemoryMB: 1 << 40, DiskMB: 1 << 40})
	}
	return e
}

// BenchmarkLifecycle creates, execs in and destroys b.N sandboxes on 50
// simulated nodes through the fleet (no HTTP API), 256 at a time: the
// cost of a sandbox's life in the store, the scheduler and the node link.
func BenchmarkLifecycle(b *testing.B) {
	st, err := store.Open(context.Background(), store.Config{Dir: b.TempDir(), NodeID: "s1"})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	e := simFleet(b, st, 50)
	ctx := context.Background()
	var next, failed atomic.Int64
	phase := map[string]time.Duration{}
	run := func(name string, fn func(id string) error) {
		start := time.Now()
		next.Store(0)
		var wg sync.WaitGroup
		for range 256 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= int64(b.N) {
						return
					}
					if err := fn(fmt.Sprintf("sb-%d", i)); err != nil {
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		phase[name] = time.Since(start)
	}
	b.ResetTimer()
	run("create", func(id string) error {
		sb := &store.Sandbox{ID: id, Tenant: "t", Image: "sim", Runtime: sim.Name, CPUs: 1, MemoryMB: 256, DiskMB: 256,
			TimeoutSec: 3600, CreatedAt: time.Now(), AccessToken: "tok"}
		undo, err := e.fleet.Place(ctx, sb, 0)
		if err != nil {
			return err
		}
		if _, err := e.fleet.StartClaimed(ctx, sb, func(rec *store.Sandbox) error { return st.CreateSandbox(ctx, rec) }); err != nil {
			undo()
			return err
		}
		return nil
	})
	run("exec", func(id string) error {
		res, err := drivertest.Exec(ctx, guestDialer{e.fleet}, id, "echo", "hi")
		if err == nil && res.Stdout != "hi\n" {
			err = fmt.Errorf("stdout %q", res.Stdout)
		}
		return err
	})
	run("delete", func(id string) error { return e.fleet.Destroy(ctx, id) })
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d operations failed", f)
	}
	for name, d := range phase {
		b.ReportMetric(float64(b.N)/d.Seconds(), name+"/s")
	}
}

// guestDialer lets drivertest.Exec reach a sandbox through the fleet.
type guestDialer struct{ f *Fleet }

func (g guestDialer) DialGuest(ctx context.Context, id string) (net.Conn, error) {
	return g.f.DialGuest(ctx, id)
}
