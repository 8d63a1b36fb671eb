package warmpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/sandboxnet"
)

// fakeSpare is a spare of the fake runtime.
type fakeSpare struct{ id string }

// fakeSpares records what a pool boots and destroys, without runsc.
type fakeSpares struct {
	mu        sync.Mutex
	booted    []string // spare IDs, "<shape memory>-<n>"
	destroyed []string
	fail      map[int64]bool // MemoryMB values whose boot fails
	block     chan struct{}  // when set, boots wait for it or ctx
}

func (f *fakeSpares) boot(ctx context.Context, sh Shape) (fakeSpare, error) {
	spec := sh.Spec
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return fakeSpare{}, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail[spec.MemoryMB] {
		return fakeSpare{}, errors.New("boot failed")
	}
	id := fmt.Sprintf("%d-%d", spec.MemoryMB, len(f.booted))
	f.booted = append(f.booted, id)
	return fakeSpare{id: id}, nil
}

func (f *fakeSpares) destroy(_ context.Context, sp fakeSpare) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.destroyed = append(f.destroyed, sp.id)
	return nil
}

func (f *fakeSpares) destroyedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(slices.Values(f.destroyed))
}

func newFakePool(t *testing.T, size int, f *fakeSpares) *Pool[fakeSpare] {
	p := New(f.config(size))
	t.Cleanup(p.Close)
	return p
}

func (f *fakeSpares) config(size int) Config[fakeSpare] {
	return Config[fakeSpare]{Size: size, Boot: f.boot, Destroy: f.destroy, Name: func(sp fakeSpare) string { return sp.id }, Log: slog.New(slog.DiscardHandler)}
}

func testShape(mem int64) Shape {
	return ShapeOf(driver.Spec{ID: "ignored", Image: driver.Image{Layers: []string{"/l"}}, MemoryMB: mem})
}

// poll waits until cond holds, failing t after a deadline.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling, with the deadline above
	}
}

func TestShapeIgnoresIDEnvHostname(t *testing.T) {
	a := driver.Spec{ID: "a", Image: driver.Image{Ref: "x", Layers: []string{"/l"}}, MemoryMB: 1, Env: map[string]string{"A": "1"}, Hostname: "h"}
	b := driver.Spec{ID: "b", Image: driver.Image{Ref: "y", Layers: []string{"/l"}}, MemoryMB: 1}
	if ShapeOf(a).Key != ShapeOf(b).Key {
		t.Errorf("specs differing in ID, ref, env and hostname have different shapes")
	}
	for name, change := range map[string]func(*driver.Spec){
		"layers":      func(s *driver.Spec) { s.Image.Layers = []string{"/m"} },
		"image env":   func(s *driver.Spec) { s.Image.Env = []string{"A=1"} },
		"user":        func(s *driver.Spec) { s.Image.User = "u" },
		"working dir": func(s *driver.Spec) { s.Image.WorkingDir = "/w" },
		"cpus":        func(s *driver.Spec) { s.CPUs = 2 },
		"memory":      func(s *driver.Spec) { s.MemoryMB = 2 },
		"disk":        func(s *driver.Spec) { s.DiskMB = 2 },
	} {
		c := b
		change(&c)
		if ShapeOf(c).Key == ShapeOf(b).Key {
			t.Errorf("specs differing in %s have the same shape", name)
		}
	}
}

func TestPoolFillsTakesAndRefills(t *testing.T) {
	f := &fakeSpares{}
	p := newFakePool(t, 2, f)
	sh := testShape(1)
	if _, ok := p.Take(sh.Key); ok {
		t.Fatal("take from an empty pool succeeded")
	}
	p.Use(sh)
	poll(t, "2 spares", func() bool { return p.ReadyCount(sh.Key) == 2 })
	sp, ok := p.Take(sh.Key)
	if !ok || sp.id != "1-0" {
		t.Fatalf("take = %+v, %v; want the first spare", sp, ok)
	}
	p.Use(sh)
	poll(t, "refill", func() bool { return p.ReadyCount(sh.Key) == 2 })
	if _, ok := p.Take(testShape(2).Key); ok {
		t.Error("take of another shape succeeded")
	}
}

func TestPoolEvictsLeastRecentShape(t *testing.T) {
	f := &fakeSpares{}
	p := newFakePool(t, 1, f)
	for _, mem := range []int64{1, 2, 3} {
		p.Use(testShape(mem))
		poll(t, "a spare", func() bool { return p.ReadyCount(testShape(mem).Key) == 1 })
	}
	poll(t, "evicted spare destroyed", func() bool { return len(f.destroyedIDs()) == 1 })
	if diff := cmp.Diff([]string{"1-0"}, f.destroyedIDs()); diff != "" {
		t.Errorf("destroyed (-want +got):\n%s", diff)
	}
	if p.ReadyCount(testShape(1).Key) != 0 || p.ReadyCount(testShape(2).Key) != 1 {
		t.Errorf("ready after eviction: shape 1 %d, shape 2 %d", p.ReadyCount(testShape(1).Key), p.ReadyCount(testShape(2).Key))
	}
}

func TestPoolDropsShapeThatFailsToBoot(t *testing.T) {
	f := &fakeSpares{fail: map[int64]bool{1: true}}
	p := newFakePool(t, 1, f)
	p.Use(testShape(1))
	poll(t, "shape dropped", func() bool {
		return len(p.Shapes()) == 0
	})
}

func TestPoolCloseDestroysSparesAndStopsBoot(t *testing.T) {
	f := &fakeSpares{}
	p := New(f.config(1))
	p.Use(testShape(1))
	poll(t, "a spare", func() bool { return p.ReadyCount(testShape(1).Key) == 1 })
	f.block = make(chan struct{}) // the next boot hangs until close cancels it
	p.Use(testShape(2))
	p.Close()
	if diff := cmp.Diff([]string{"1-0"}, f.destroyedIDs()); diff != "" {
		t.Errorf("destroyed by close (-want +got):\n%s", diff)
	}
	if _, ok := p.Take(testShape(1).Key); ok {
		t.Error("take after close succeeded")
	}
	p.Close() // idempotent
}

func TestPoolKeepsDeclaredPools(t *testing.T) {
	f := &fakeSpares{}
	p := newFakePool(t, 0, f) // the implicit pool is off
	a, b := testShape(1), testShape(2)
	p.SetPools([]driver.Pool{{Key: "a", Spec: a.Spec, Size: 3}, {Key: "b", Spec: b.Spec, Size: 1}})
	poll(t, "declared pools full", func() bool { return p.ReadyCount(a.Key) == 3 && p.ReadyCount(b.Key) == 1 })
	if diff := cmp.Diff([]driver.PoolStatus{{Key: "a", Ready: 3, Size: 3}, {Key: "b", Ready: 1, Size: 1}}, p.Status()); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	// A take is replaced without a use (declared pools refill on their own).
	if _, ok := p.Take(a.Key); !ok {
		t.Fatal("take from a declared pool failed")
	}
	poll(t, "refill after take", func() bool { return p.ReadyCount(a.Key) == 3 })
	// use of other shapes (implicit pool off) evicts nothing declared.
	p.Use(testShape(3))
	// Shrinking destroys the excess; dropping a pool destroys its spares.
	p.SetPools([]driver.Pool{{Key: "a", Spec: a.Spec, Size: 1}})
	poll(t, "excess destroyed", func() bool { return len(f.destroyedIDs()) == 3 })
	if p.ReadyCount(a.Key) != 1 || p.ReadyCount(b.Key) != 0 {
		t.Errorf("after shrink: a %d, b %d ready", p.ReadyCount(a.Key), p.ReadyCount(b.Key))
	}
}

func TestPoolDeclaredShapeSurvivesImplicitEviction(t *testing.T) {
	f := &fakeSpares{}
	p := newFakePool(t, 2, f)
	a := testShape(1)
	p.SetPools([]driver.Pool{{Key: "a", Spec: a.Spec, Size: 1}})
	p.Use(a) // the implicit pool wants 2 of a
	poll(t, "2 spares of a", func() bool { return p.ReadyCount(a.Key) == 2 })
	p.Use(testShape(2))
	p.Use(testShape(3)) // a leaves the implicit pool: only the declared 1 stays
	poll(t, "a back to its declared size", func() bool { return p.ReadyCount(a.Key) == 1 })
}

func TestPoolDeclaredBootFailureBacksOff(t *testing.T) {
	f := &fakeSpares{fail: map[int64]bool{1: true}}
	p := newFakePool(t, 0, f)
	a := testShape(1)
	p.SetPools([]driver.Pool{{Key: "a", Spec: a.Spec, Size: 1}})
	poll(t, "a back-off", func() bool {
		st := p.Status()
		return len(st) == 1 && st[0].Waiting != ""
	})
	if st := p.Status(); st[0].Ready != 0 || !strings.Contains(st[0].Waiting, "boot failed") {
		t.Errorf("status of a failing pool: %+v", st)
	}
	f.mu.Lock()
	f.fail = nil
	f.mu.Unlock()
	// The declared shape is kept and retried after the back-off.
	poll(t, "retry after back-off", func() bool { return p.ReadyCount(a.Key) == 1 })
	if st := p.Status(); st[0].Waiting != "" {
		t.Errorf("a full pool still waits: %+v", st)
	}
}

func TestPoolWaitsForHostMemory(t *testing.T) {
	f := &fakeSpares{}
	p := newFakePool(t, 0, f)
	var mu sync.Mutex
	short := "no memory"
	p.memory = func(driver.Spec) string { mu.Lock(); defer mu.Unlock(); return short }
	a := testShape(1)
	p.SetPools([]driver.Pool{{Key: "a", Spec: a.Spec, Size: 2}})
	poll(t, "waiting for memory", func() bool {
		st := p.Status()
		return len(st) == 1 && st[0].Waiting == "no memory"
	})
	f.mu.Lock()
	booted := len(f.booted)
	f.mu.Unlock()
	if booted != 0 {
		t.Fatalf("%d spares booted while the host had no memory", booted)
	}
	mu.Lock()
	short = ""
	mu.Unlock()
	poll(t, "fill once memory is back", func() bool { return p.ReadyCount(a.Key) == 2 })
}

func TestCloneShapeDiffersByCheckpoint(t *testing.T) {
	spec := driver.Spec{Image: driver.Image{Layers: []string{"/l"}}, MemoryMB: 1}
	if CloneShapeOf(spec, "/snap/a").Key == CloneShapeOf(spec, "/snap/b").Key || CloneShapeOf(spec, "/snap/a").Key == ShapeOf(spec).Key {
		t.Error("clone shapes of different checkpoints (or none) share a key")
	}
	if CloneShapeOf(spec, "").Key != ShapeOf(spec).Key {
		t.Error("a clone shape without a checkpoint differs from the plain shape")
	}
}

// TestShapeNetwork: a sandbox of the default policy gets spares that have
// it; every other policy shares spares that refuse everything (the claim
// applies the policy), never spares with more access.
func TestShapeNetwork(t *testing.T) {
	spec := func(p *sandboxnet.Policy) driver.Spec {
		return driver.Spec{Image: driver.Image{Layers: []string{"/l"}}, MemoryMB: 1, Network: p}
	}
	def := sandboxnet.DefaultPolicy()
	defEmpty := sandboxnet.Policy{Internet: true, Allow: []string{}, Deny: []string{}}
	off := sandboxnet.Policy{}
	allow := sandboxnet.Policy{Allow: []string{"10.0.0.0/8"}}
	deny := sandboxnet.Policy{Internet: true, Deny: []string{"example.com"}}

	if got := ShapeOf(spec(&def)).Spec.Network; got == nil || !got.Internet {
		t.Errorf("default policy: spare network %+v, want the internet on", got)
	}
	if ShapeOf(spec(&def)).Key != ShapeOf(spec(&defEmpty)).Key {
		t.Errorf("the default policy with empty rule lists has another shape")
	}
	for name, p := range map[string]sandboxnet.Policy{"off": off, "allow list": allow, "deny list": deny} {
		sh := ShapeOf(spec(&p))
		if got := sh.Spec.Network; got == nil || got.Internet || len(got.Allow)+len(got.Deny) != 0 {
			t.Errorf("%s: spare network %+v, want one that refuses everything", name, got)
		}
		if sh.Key == ShapeOf(spec(&def)).Key {
			t.Errorf("%s shares the default policy's spares", name)
		}
		if sh.Key != ShapeOf(spec(&off)).Key {
			t.Errorf("%s does not share the refusing spares", name)
		}
	}
	if ShapeOf(spec(nil)).Spec.Network != nil {
		t.Errorf("no network: the spare has one")
	}
}
