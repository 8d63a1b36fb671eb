package scheduler

import "sync/atomic"

// waiter is a parked request. It may be parked in several pools (a
// tenant's pool and the shared pool); the first pool to claim it places it.
type waiter struct {
	req     Request
	claimed atomic.Bool
}

// claim reports whether the caller won the right to place w.
func (w *waiter) claim() bool { return w.claimed.CompareAndSwap(false, true) }

// blockedSet is a pool's blocked tracker: requests that fit nowhere,
// parked under each class of the pool that admits them. Capacity freed on
// a node wakes only its class's waiters; a waiter no class admitted
// ("escaped") is filed under a class when one that admits it appears.
// Waiters are kept in arrival order and placed first come, first served.
type blockedSet struct {
	byClass map[int32][]*waiter
	all     []*waiter // every waiter, for new classes
	n       int       // waiters not yet known to be claimed
}

// park files w under the classes elig.
func (b *blockedSet) park(w *waiter, elig []int32) {
	if b.byClass == nil {
		b.byClass = map[int32][]*waiter{}
	}
	for _, c := range elig {
		b.byClass[c] = append(b.byClass[c], w)
	}
	b.all = append(b.all, w)
	b.n++
}

// classAdded files the waiters that class c admits under it.
func (b *blockedSet) classAdded(c int32, class *nodeClass) {
	b.compactAll()
	for _, w := range b.all {
		if class.admits(w.req.Constraints) {
			b.byClass[c] = append(b.byClass[c], w)
		}
	}
}

// wake offers class c's waiters, in order, to try; try reports whether the
// waiter is done (placed here or elsewhere) and drops it.
func (b *blockedSet) wake(c int32, _ *nodeClass, try func(*waiter) bool) {
	ws := b.byClass[c]
	kept := ws[:0]
	for _, w := range ws {
		if w.claimed.Load() || try(w) {
			continue
		}
		kept = append(kept, w)
	}
	clear(ws[len(kept):])
	b.byClass[c] = kept
	if len(kept) < len(ws) {
		b.compactAll()
	}
}

func (b *blockedSet) compactAll() {
	kept := b.all[:0]
	for _, w := range b.all {
		if !w.claimed.Load() {
			kept = append(kept, w)
		}
	}
	clear(b.all[len(kept):])
	b.all = kept
	b.n = len(kept)
	if b.n == 0 {
		clear(b.byClass)
	}
}

// Len is the number of parked requests still waiting (a cancelled or
// placed one is left out at once, though dropped from the lists only when
// a wake passes over it).
func (b *blockedSet) Len() int {
	n := 0
	for _, w := range b.all {
		if !w.claimed.Load() {
			n++
		}
	}
	return n
}
