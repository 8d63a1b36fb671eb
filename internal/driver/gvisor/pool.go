package gvisor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/denhq/den/internal/driver"
)

// maxPoolShapes is how many shapes the pool keeps spares for: the most
// recently created ones. Spares of an evicted shape are destroyed.
const maxPoolShapes = 2

// spareDestroyTimeout bounds the destruction of one spare.
const spareDestroyTimeout = time.Minute

// shape is what a spare is booted with: the parts of a Spec that are fixed
// when runsc starts. Env and Hostname are not among them: a claim applies
// them through the guest agent.
type shape struct {
	key  string
	spec driver.Spec // ID, Env and Hostname are empty
}

// shapeOf returns the shape of spec. Image.Ref is left out: it is a label.
func shapeOf(spec driver.Spec) shape {
	s := driver.Spec{
		Image: driver.Image{
			Layers: slices.Clone(spec.Image.Layers), Env: slices.Clone(spec.Image.Env),
			WorkingDir: spec.Image.WorkingDir, User: spec.Image.User,
		},
		CPUs: spec.CPUs, MemoryMB: spec.MemoryMB, DiskMB: spec.DiskMB,
	}
	data, _ := json.Marshal(s) // plain strings and numbers: cannot fail
	sum := sha256.Sum256(data)
	return shape{key: hex.EncodeToString(sum[:8]), spec: s}
}

// spare is a started sandbox that nobody has claimed yet. Its runsc
// container ID (and cgroup name) is id; it lives in directory p.
type spare struct {
	id string
	p  paths
}

// pool keeps up to size spares for each of the maxPoolShapes most recently
// used shapes. One goroutine, owned by the pool, boots spares one at a time
// (a boot is CPU-bound; two at once would slow the creates the pool exists
// to speed up) and destroys evicted ones. boot and destroy are the driver's;
// tests replace them.
type pool struct {
	size    int
	boot    func(ctx context.Context, spec driver.Spec) (spare, error)
	destroy func(ctx context.Context, sp spare) error
	log     *slog.Logger

	mu     sync.Mutex
	shapes []shape            // most recently used first; guarded by mu
	ready  map[string][]spare // by shape key; guarded by mu
	trash  []spare            // evicted spares to destroy; guarded by mu
	closed bool               // guarded by mu

	kick   chan struct{} // wakes the loop; buffered, never closed
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newPool returns a pool; with size > 0 it starts the refill loop, which
// close stops.
func newPool(size int, boot func(context.Context, driver.Spec) (spare, error), destroy func(context.Context, spare) error, log *slog.Logger) *pool {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pool{
		size: size, boot: boot, destroy: destroy, log: log,
		ready: map[string][]spare{}, kick: make(chan struct{}, 1),
		ctx: ctx, cancel: cancel,
	}
	if size > 0 {
		p.wg.Add(1)
		go p.loop()
	}
	return p
}

// take removes and returns a ready spare of shape key.
func (p *pool) take(key string) (spare, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	spares := p.ready[key]
	if p.closed || len(spares) == 0 {
		return spare{}, false
	}
	sp := spares[0]
	p.ready[key] = spares[1:]
	return sp, true
}

// use makes sh the most recently used shape, evicts the least recently
// used beyond maxPoolShapes, and wakes the loop to refill. It never blocks.
func (p *pool) use(sh shape) {
	if p.size == 0 {
		return
	}
	p.mu.Lock()
	p.shapes = slices.DeleteFunc(p.shapes, func(s shape) bool { return s.key == sh.key })
	p.shapes = slices.Insert(p.shapes, 0, sh)
	for _, old := range p.shapes[min(len(p.shapes), maxPoolShapes):] {
		p.trash = append(p.trash, p.ready[old.key]...)
		delete(p.ready, old.key)
	}
	p.shapes = p.shapes[:min(len(p.shapes), maxPoolShapes)]
	p.mu.Unlock()
	p.wake()
}

// wake makes the loop look for work, without blocking.
func (p *pool) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// readyCount is the number of ready spares of shape key.
func (p *pool) readyCount(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ready[key])
}

// loop does the pool's work until close: when woken it works until nothing
// is left to do.
func (p *pool) loop() {
	defer p.wg.Done()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.kick:
		}
		for p.ctx.Err() == nil && p.work() {
		}
	}
}

// work does one thing: destroy an evicted spare, or boot a spare for the
// most recently used shape that lacks one. It reports false when there
// was nothing to do.
func (p *pool) work() bool {
	p.mu.Lock()
	if n := len(p.trash); n > 0 {
		sp := p.trash[n-1]
		p.trash = p.trash[:n-1]
		p.mu.Unlock()
		p.destroyOne(sp)
		return true
	}
	sh, ok := p.lacking()
	p.mu.Unlock()
	if !ok {
		return false
	}
	p.fill(sh)
	return true
}

// lacking returns the most recently used shape with fewer than size spares.
// Preconditions: p.mu is held.
func (p *pool) lacking() (shape, bool) {
	for _, sh := range p.shapes {
		if len(p.ready[sh.key]) < p.size {
			return sh, true
		}
	}
	return shape{}, false
}

// fill boots one spare of sh and adds it. A shape whose boot fails is
// forgotten, so that a broken image is not retried in a loop; the next
// Create of that shape brings it back.
func (p *pool) fill(sh shape) {
	sp, err := p.boot(p.ctx, sh.spec)
	if err != nil {
		if p.ctx.Err() == nil {
			p.log.Warn("warm spare failed to start; shape dropped from the pool", "shape", sh.key, "err", err)
			p.forget(sh.key)
		}
		return
	}
	if !p.add(sh.key, sp) {
		p.destroyOne(sp)
		return
	}
	p.log.Debug("warm spare ready", "spare", sp.id, "shape", sh.key)
}

// add makes sp a ready spare of shape key unless the shape was evicted,
// is full or the pool closed meanwhile; false means the caller destroys sp.
func (p *pool) add(key string, sp spare) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	wanted := slices.ContainsFunc(p.shapes, func(s shape) bool { return s.key == key })
	if p.closed || !wanted || len(p.ready[key]) >= p.size {
		return false
	}
	p.ready[key] = append(p.ready[key], sp)
	return true
}

// forget drops shape key and moves its spares to the trash.
func (p *pool) forget(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.shapes = slices.DeleteFunc(p.shapes, func(s shape) bool { return s.key == key })
	p.trash = append(p.trash, p.ready[key]...)
	delete(p.ready, key)
}

// destroyOne destroys sp on a context of its own: it also runs while the
// pool closes.
func (p *pool) destroyOne(sp spare) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), spareDestroyTimeout)
	defer cancel()
	if err := p.destroy(ctx, sp); err != nil {
		p.log.Warn("destroy warm spare", "spare", sp.id, "err", err)
	}
}

// close stops the loop (an in-flight boot is cancelled and undone), waits
// for it, and destroys every spare left. It is idempotent.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	left := p.trash
	for _, spares := range p.ready {
		left = append(left, spares...)
	}
	p.trash, p.ready, p.shapes = nil, map[string][]spare{}, nil
	p.mu.Unlock()
	for _, sp := range left {
		p.destroyOne(sp)
	}
}
