// Package warmpool keeps started, never-used sandboxes ("spares") of
// declared and recently used shapes ready for a driver to claim; see
// driver.Pooler. It is the runtime-independent half of a Pooler: when to
// boot, which spares to keep, back-off and memory checks. The driver
// supplies how a spare boots, is destroyed and is claimed.
package warmpool

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/denhq/den/internal/driver"
)

// MaxShapes is how many shapes the implicit pool keeps spares for: the
// most recently created ones. Spares of an evicted shape are destroyed
// unless a declared pool wants them.
const MaxShapes = 2

// spareDestroyTimeout bounds the destruction of one spare.
const spareDestroyTimeout = time.Minute

// RefillDelay is how long a take or a use waits before it wakes the
// refill: a boot takes a CPU for ~0.2 s, and the new sandbox's first
// commands run right after its create.
const RefillDelay = 300 * time.Millisecond

// Back-off of a declared pool whose spare failed to boot, or that waits
// for host memory.
const (
	poolBackoffMin = 2 * time.Second
	poolBackoffMax = 2 * time.Minute
)

// declared is a pool declared through SetPools.
type declared struct {
	key  string // the pool's key
	sh   Shape
	size int
}

// backoff is a shape that waits before its next boot.
type backoff struct {
	until time.Time
	wait  time.Duration // the last back-off, doubled on each failure
	why   string
}

// Config is what a driver gives its pool.
type Config[S any] struct {
	// Size is how many spares the implicit pool keeps of each of the
	// MaxShapes most recently used shapes (0: none; declared pools only).
	Size int
	// Boot starts a spare of sh. The pool cancels ctx when it closes; Boot
	// then undoes what it started.
	Boot func(ctx context.Context, sh Shape) (S, error)
	// Destroy destroys a spare that nobody claimed.
	Destroy func(ctx context.Context, sp S) error
	// Memory reports why the host cannot take another spare of spec now,
	// or "" (nil: never short).
	Memory func(spec driver.Spec) string
	// Name names a spare in logs.
	Name func(sp S) string
	Log  *slog.Logger
}

// Pool keeps spares of two kinds of shape: declared pools (SetPools), each
// with its own size, and the implicit pool: up to Size spares for each of
// the MaxShapes most recently used shapes. One goroutine, owned by the
// pool, boots spares one at a time (a boot is CPU-bound; two at once would
// slow the creates the pool exists to speed up) and destroys unwanted
// ones.
type Pool[S any] struct {
	size    int
	boot    func(ctx context.Context, sh Shape) (S, error)
	destroy func(ctx context.Context, sp S) error
	memory  func(spec driver.Spec) string
	name    func(sp S) string
	log     *slog.Logger

	mu       sync.Mutex
	shapes   []Shape            // implicit: most recently used first; guarded by mu
	declared []declared         // guarded by mu
	ready    map[string][]S     // by shape key; guarded by mu
	backoffs map[string]backoff // by shape key; guarded by mu
	trash    []S                // unwanted spares to destroy; guarded by mu
	closed   bool               // guarded by mu

	kick   chan struct{} // wakes the loop; buffered, never closed
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a pool and starts its loop, which Close stops.
func New[S any](cfg Config[S]) *Pool[S] {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool[S]{
		size: cfg.Size, boot: cfg.Boot, destroy: cfg.Destroy, memory: cfg.Memory, name: cfg.Name, log: cfg.Log,
		ready: map[string][]S{}, backoffs: map[string]backoff{}, kick: make(chan struct{}, 1),
		ctx: ctx, cancel: cancel,
	}
	if p.memory == nil {
		p.memory = func(driver.Spec) string { return "" }
	}
	if p.name == nil {
		p.name = func(S) string { return "" }
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.wg.Add(1)
	go p.loop()
	return p
}

// Take removes and returns a ready spare of shape key, and wakes the loop
// to replace it after RefillDelay.
func (p *Pool[S]) Take(key string) (S, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	spares := p.ready[key]
	if p.closed || len(spares) == 0 {
		var none S
		return none, false
	}
	sp := spares[0]
	p.ready[key] = spares[1:]
	time.AfterFunc(RefillDelay, p.wake)
	return sp, true
}

// Use makes sh the most recently used shape of the implicit pool, evicts
// the least recently used beyond MaxShapes, and wakes the loop to refill
// after RefillDelay, like Take: a create just ended, and the sandbox's
// first commands run now. It never blocks.
func (p *Pool[S]) Use(sh Shape) {
	if p.size == 0 {
		return
	}
	p.mu.Lock()
	p.shapes = slices.DeleteFunc(p.shapes, func(s Shape) bool { return s.Key == sh.Key })
	p.shapes = slices.Insert(p.shapes, 0, sh)
	p.shapes = p.shapes[:min(len(p.shapes), MaxShapes)]
	p.dropExcess()
	p.mu.Unlock()
	time.AfterFunc(RefillDelay, p.wake)
}

// SetPools replaces the declared pools and wakes the loop. Spares
// beyond the new targets are destroyed; back-offs of shapes still declared
// are kept.
func (p *Pool[S]) SetPools(pools []driver.Pool) {
	decl := make([]declared, 0, len(pools))
	for _, d := range pools {
		decl = append(decl, declared{key: d.Key, sh: CloneShapeOf(d.Spec, d.From), size: max(d.Size, 0)})
	}
	p.mu.Lock()
	p.declared = decl
	for key := range p.backoffs {
		if p.target(key) == 0 {
			delete(p.backoffs, key)
		}
	}
	p.dropExcess()
	p.mu.Unlock()
	time.AfterFunc(RefillDelay, p.wake)
}

// Status reports the declared pools, in SetPools order.
func (p *Pool[S]) Status() []driver.PoolStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]driver.PoolStatus, 0, len(p.declared))
	for _, d := range p.declared {
		st := driver.PoolStatus{Key: d.key, Size: d.size, Ready: min(len(p.ready[d.sh.Key]), d.size)}
		if st.Ready < st.Size {
			st.Waiting = p.backoffs[d.sh.Key].why
		}
		out = append(out, st)
	}
	return out
}

// target is how many spares of shape key are wanted: the declared pools'
// sizes added up, or the implicit pool's size when that is more.
// Preconditions: p.mu is held.
func (p *Pool[S]) target(key string) int {
	n := 0
	for _, d := range p.declared {
		if d.sh.Key == key {
			n += d.size
		}
	}
	if slices.ContainsFunc(p.shapes, func(s Shape) bool { return s.Key == key }) {
		n = max(n, p.size)
	}
	return n
}

// dropExcess moves spares beyond their shape's target to the trash.
// Preconditions: p.mu is held.
func (p *Pool[S]) dropExcess() {
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
func (p *Pool[S]) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// ReadyCount is the number of ready spares of shape key.
func (p *Pool[S]) ReadyCount(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ready[key])
}

// Ready lists the ready spares of every shape.
func (p *Pool[S]) Ready() []S {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []S
	for _, spares := range p.ready {
		out = append(out, spares...)
	}
	return out
}

// Shapes lists the keys of the implicit pool's shapes, most recently used
// first.
func (p *Pool[S]) Shapes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := make([]string, 0, len(p.shapes))
	for _, sh := range p.shapes {
		keys = append(keys, sh.Key)
	}
	return keys
}

// loop does the pool's work until Close: when woken it works until nothing
// is left to do.
func (p *Pool[S]) loop() {
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
func (p *Pool[S]) work() bool {
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
	if why := p.memory(sh.Spec); why != "" {
		p.failed(sh, why)
		return true
	}
	p.fill(sh)
	return true
}

// lacking returns the first shape, declared ones before the implicit
// pool's, with fewer spares than its target and no back-off running.
// Preconditions: p.mu is held.
func (p *Pool[S]) lacking(now time.Time) (Shape, bool) {
	candidates := make([]Shape, 0, len(p.declared)+len(p.shapes))
	for _, d := range p.declared {
		candidates = append(candidates, d.sh)
	}
	candidates = append(candidates, p.shapes...)
	for _, sh := range candidates {
		if b, ok := p.backoffs[sh.Key]; ok && now.Before(b.until) {
			continue
		}
		if len(p.ready[sh.Key]) < p.target(sh.Key) {
			return sh, true
		}
	}
	return Shape{}, false
}

// fill boots one spare of sh and adds it.
func (p *Pool[S]) fill(sh Shape) {
	sp, err := p.boot(p.ctx, sh)
	if err != nil {
		if p.ctx.Err() == nil {
			p.failed(sh, "the last spare failed to start: "+err.Error())
		}
		return
	}
	if !p.add(sh.Key, sp) {
		p.destroyOne(sp)
		return
	}
	p.log.Debug("warm spare ready", "spare", p.name(sp), "shape", sh.Key)
}

// failed handles a shape that cannot get a spare now. A declared shape
// backs off (doubling, up to poolBackoffMax) and is retried; a shape of
// the implicit pool alone is forgotten, so that a broken image is not
// retried in a loop: the next Create of that shape brings it back.
func (p *Pool[S]) failed(sh Shape, why string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !slices.ContainsFunc(p.declared, func(d declared) bool { return d.sh.Key == sh.Key }) {
		p.log.Warn("warm spare failed to start; shape dropped from the pool", "shape", sh.Key, "err", why)
		p.shapes = slices.DeleteFunc(p.shapes, func(s Shape) bool { return s.Key == sh.Key })
		p.dropExcess()
		return
	}
	b := p.backoffs[sh.Key]
	b.wait = min(max(2*b.wait, poolBackoffMin), poolBackoffMax)
	b.until, b.why = time.Now().Add(b.wait), why
	p.backoffs[sh.Key] = b
	p.log.Warn("warm pool waits", "shape", sh.Key, "retry_in", b.wait, "why", why)
	time.AfterFunc(b.wait, p.wake)
}

// add makes sp a ready spare of shape key unless its shape is no longer
// wanted, is full or the pool closed meanwhile; false means the caller
// destroys sp. A spare that booted ends its shape's back-off.
func (p *Pool[S]) add(key string, sp S) bool {
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
func (p *Pool[S]) destroyOne(sp S) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), spareDestroyTimeout)
	defer cancel()
	if err := p.destroy(ctx, sp); err != nil {
		p.log.Warn("destroy warm spare", "spare", p.name(sp), "err", err)
	}
}

// Close stops the loop (an in-flight boot is cancelled and undone), waits
// for it, and destroys every spare left. It is idempotent.
func (p *Pool[S]) Close() {
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
	p.trash, p.ready, p.shapes, p.declared = nil, map[string][]S{}, nil, nil
	p.mu.Unlock()
	for _, sp := range left {
		p.destroyOne(sp)
	}
}
