package gvisor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/denhq/den/internal/driver"
)

// maxPoolShapes is how many shapes the implicit pool keeps spares for: the
// most recently created ones. Spares of an evicted shape are destroyed
// unless a declared pool wants them.
const maxPoolShapes = 2

// spareDestroyTimeout bounds the destruction of one spare.
const spareDestroyTimeout = time.Minute

// refillDelay is how long a take waits before it wakes the refill: a boot
// takes a CPU for ~0.2 s, and the claimed sandbox's first commands run
// right after the claim.
const refillDelay = 300 * time.Millisecond

// Back-off of a declared pool whose spare failed to boot, or that waits
// for host memory.
const (
	poolBackoffMin = 2 * time.Second
	poolBackoffMax = 2 * time.Minute
)

// shape is what a spare is booted with: the parts of a Spec that are fixed
// when runsc starts, and for a clone the checkpoint it is restored from.
// Env and Hostname are not among them: a claim applies them through the
// guest agent.
type shape struct {
	key  string
	spec driver.Spec // ID, Env and Hostname are empty
	from string      // the checkpoint directory of a clone's shape
}

// shapeOf returns the shape of spec. Image.Ref is left out: it is a label.
func shapeOf(spec driver.Spec) shape { return cloneShapeOf(spec, "") }

// cloneShapeOf returns the shape of a clone of spec from checkpoint
// directory from ("" for a booted sandbox).
func cloneShapeOf(spec driver.Spec, from string) shape {
	s := driver.Spec{
		Image: driver.Image{
			Layers: slices.Clone(spec.Image.Layers), Env: slices.Clone(spec.Image.Env),
			WorkingDir: spec.Image.WorkingDir, User: spec.Image.User,
		},
		CPUs: spec.CPUs, MemoryMB: spec.MemoryMB, DiskMB: spec.DiskMB,
	}
	data, _ := json.Marshal(struct { // plain strings and numbers: cannot fail
		Spec driver.Spec `json:"spec"`
		From string      `json:"from,omitempty"`
	}{s, from})
	sum := sha256.Sum256(data)
	return shape{key: hex.EncodeToString(sum[:8]), spec: s, from: from}
}

// spare is a started sandbox that nobody has claimed yet. Its runsc
// container ID (and cgroup name) is id; it lives in directory p.
type spare struct {
	id string
	p  paths
	// conn, when not nil, is a connection to the spare's guest agent,
	// dialled while it waits (conns.go).
	conn net.Conn
}

// declared is a pool declared through SetPools.
type declared struct {
	key  string // the pool's key
	sh   shape
	size int
}

// backoff is a shape that waits before its next boot.
type backoff struct {
	until time.Time
	wait  time.Duration // the last back-off, doubled on each failure
	why   string
}

// pool keeps spares of two kinds of shape: declared pools (SetPools), each
// with its own size, and the implicit pool: up to size spares for each of
// the maxPoolShapes most recently used shapes. One goroutine, owned by the
// pool, boots spares one at a time (a boot is CPU-bound; two at once would
// slow the creates the pool exists to speed up) and destroys unwanted
// ones. boot, destroy and memory are the driver's; tests replace them.
type pool struct {
	size    int
	boot    func(ctx context.Context, sh shape) (spare, error)
	destroy func(ctx context.Context, sp spare) error
	// memory reports why the host cannot take another spare of spec, or "".
	memory func(spec driver.Spec) string
	log    *slog.Logger

	mu       sync.Mutex
	shapes   []shape            // implicit: most recently used first; guarded by mu
	declared []declared         // guarded by mu
	ready    map[string][]spare // by shape key; guarded by mu
	backoffs map[string]backoff // by shape key; guarded by mu
	trash    []spare            // unwanted spares to destroy; guarded by mu
	closed   bool               // guarded by mu

	kick   chan struct{} // wakes the loop; buffered, never closed
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newPool returns a pool and starts its loop, which close stops.
func newPool(size int, boot func(context.Context, shape) (spare, error), destroy func(context.Context, spare) error, log *slog.Logger) *pool {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pool{
		size: size, boot: boot, destroy: destroy, memory: func(driver.Spec) string { return "" }, log: log,
		ready: map[string][]spare{}, backoffs: map[string]backoff{}, kick: make(chan struct{}, 1),
		ctx: ctx, cancel: cancel,
	}
	p.wg.Add(1)
	go p.loop()
	return p
}

// take removes and returns a ready spare of shape key, and wakes the loop
// to replace it after refillDelay.
func (p *pool) take(key string) (spare, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	spares := p.ready[key]
	if p.closed || len(spares) == 0 {
		return spare{}, false
	}
	sp := spares[0]
	p.ready[key] = spares[1:]
	time.AfterFunc(refillDelay, p.wake)
	return sp, true
}

// use makes sh the most recently used shape of the implicit pool, evicts
// the least recently used beyond maxPoolShapes, and wakes the loop to
// refill. It never blocks.
func (p *pool) use(sh shape) {
	if p.size == 0 {
		return
	}
	p.mu.Lock()
	p.shapes = slices.DeleteFunc(p.shapes, func(s shape) bool { return s.key == sh.key })
	p.shapes = slices.Insert(p.shapes, 0, sh)
	p.shapes = p.shapes[:min(len(p.shapes), maxPoolShapes)]
	p.dropExcess()
	p.mu.Unlock()
	p.wake()
}

// setDeclared replaces the declared pools and wakes the loop. Spares
// beyond the new targets are destroyed; back-offs of shapes still declared
// are kept.
func (p *pool) setDeclared(pools []declared) {
	p.mu.Lock()
	p.declared = slices.Clone(pools)
	for key := range p.backoffs {
		if p.target(key) == 0 {
			delete(p.backoffs, key)
		}
	}
	p.dropExcess()
	p.mu.Unlock()
	p.wake()
}

// status reports the declared pools.
func (p *pool) status() []driver.PoolStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]driver.PoolStatus, 0, len(p.declared))
	for _, d := range p.declared {
		st := driver.PoolStatus{Key: d.key, Size: d.size, Ready: min(len(p.ready[d.sh.key]), d.size)}
		if st.Ready < st.Size {
			st.Waiting = p.backoffs[d.sh.key].why
		}
		out = append(out, st)
	}
	return out
}

// target is how many spares of shape key are wanted: the declared pools'
// sizes added up, or the implicit pool's size when that is more.
// Preconditions: p.mu is held.
func (p *pool) target(key string) int {
	n := 0
	for _, d := range p.declared {
		if d.sh.key == key {
			n += d.size
		}
	}
	if slices.ContainsFunc(p.shapes, func(s shape) bool { return s.key == key }) {
		n = max(n, p.size)
	}
	return n
}

// dropExcess moves spares beyond their shape's target to the trash.
// Preconditions: p.mu is held.
func (p *pool) dropExcess() {
	for key, spares := range p.ready {
		if t := p.target(key); len(spares) > t {
			p.trash = append(p.trash, spares[t:]...)
			p.ready[key] = spares[:t]
		}
		if len(p.ready[key]) == 0 {
			delete(p.ready, key)
		}
	}
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

// work does one thing: destroy an unwanted spare, or boot a spare for the
// first shape that lacks one (declared pools first). It reports false when
// there was nothing to do.
func (p *pool) work() bool {
	p.mu.Lock()
	if n := len(p.trash); n > 0 {
		sp := p.trash[n-1]
		p.trash = p.trash[:n-1]
		p.mu.Unlock()
		p.destroyOne(sp)
		return true
	}
	sh, ok := p.lacking(time.Now())
	p.mu.Unlock()
	if !ok {
		return false
	}
	if why := p.memory(sh.spec); why != "" {
		p.failed(sh, why)
		return true
	}
	p.fill(sh)
	return true
}

// lacking returns the first shape, declared ones before the implicit
// pool's, with fewer spares than its target and no back-off running.
// Preconditions: p.mu is held.
func (p *pool) lacking(now time.Time) (shape, bool) {
	candidates := make([]shape, 0, len(p.declared)+len(p.shapes))
	for _, d := range p.declared {
		candidates = append(candidates, d.sh)
	}
	candidates = append(candidates, p.shapes...)
	for _, sh := range candidates {
		if b, ok := p.backoffs[sh.key]; ok && now.Before(b.until) {
			continue
		}
		if len(p.ready[sh.key]) < p.target(sh.key) {
			return sh, true
		}
	}
	return shape{}, false
}

// fill boots one spare of sh and adds it.
func (p *pool) fill(sh shape) {
	sp, err := p.boot(p.ctx, sh)
	if err != nil {
		if p.ctx.Err() == nil {
			p.failed(sh, "the last spare failed to start: "+err.Error())
		}
		return
	}
	if !p.add(sh.key, sp) {
		p.destroyOne(sp)
		return
	}
	p.log.Debug("warm spare ready", "spare", sp.id, "shape", sh.key)
}

// failed handles a shape that cannot get a spare now. A declared shape
// backs off (doubling, up to poolBackoffMax) and is retried; a shape of
// the implicit pool alone is forgotten, so that a broken image is not
// retried in a loop: the next Create of that shape brings it back.
func (p *pool) failed(sh shape, why string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !slices.ContainsFunc(p.declared, func(d declared) bool { return d.sh.key == sh.key }) {
		p.log.Warn("warm spare failed to start; shape dropped from the pool", "shape", sh.key, "err", why)
		p.shapes = slices.DeleteFunc(p.shapes, func(s shape) bool { return s.key == sh.key })
		p.dropExcess()
		return
	}
	b := p.backoffs[sh.key]
	b.wait = min(max(2*b.wait, poolBackoffMin), poolBackoffMax)
	b.until, b.why = time.Now().Add(b.wait), why
	p.backoffs[sh.key] = b
	p.log.Warn("warm pool waits", "shape", sh.key, "retry_in", b.wait, "why", why)
	time.AfterFunc(b.wait, p.wake)
}

// add makes sp a ready spare of shape key unless its shape is no longer
// wanted, is full or the pool closed meanwhile; false means the caller
// destroys sp. A spare that booted ends its shape's back-off.
func (p *pool) add(key string, sp spare) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.backoffs, key)
	if p.closed || len(p.ready[key]) >= p.target(key) {
		return false
	}
	p.ready[key] = append(p.ready[key], sp)
	return true
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
	p.trash, p.ready, p.shapes, p.declared = nil, map[string][]spare{}, nil, nil
	p.mu.Unlock()
	for _, sp := range left {
		p.destroyOne(sp)
	}
}
