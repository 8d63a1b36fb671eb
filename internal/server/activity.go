package server

import (
	"sync"
	"time"
)

// activity tracks, in memory, when each sandbox was last used and how many
// requests through its guest proxy are open, for idle timeouts. It costs a
// map update per request and no store write. After a restart it knows
// nothing: a sandbox's idle time then counts from the first time the
// reaper asks (see idleSince), so a restart never makes a sandbox idle
// early.
type activity struct {
	mu sync.Mutex
	m  map[string]*sandboxActivity
}

type sandboxActivity struct {
	last time.Time // the last activity
	open int       // guest proxy requests (streams included) in progress
	// retryAt delays the reaper's next action on the sandbox after one
	// failed.
	retryAt time.Time
}

func newActivity() *activity { return &activity{m: map[string]*sandboxActivity{}} }

// entry returns id's entry, created as last active at now. Preconditions:
// a.mu is held.
func (a *activity) entry(id string, now time.Time) *sandboxActivity {
	e := a.m[id]
	if e == nil {
		e = &sandboxActivity{last: now}
		a.m[id] = e
	}
	return e
}

// touch records activity on id at now.
func (a *activity) touch(id string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.entry(id, now)
	if now.After(e.last) {
		e.last = now
	}
}

// begin records the start of a request through id's guest proxy; end
// must follow when it is over. A sandbox with a request open is active.
func (a *activity) begin(id string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.entry(id, now)
	e.open++
	if now.After(e.last) {
		e.last = now
	}
}

// end records the end of a request begin recorded.
func (a *activity) end(id string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.entry(id, now)
	e.open = max(0, e.open-1)
	if now.After(e.last) {
		e.last = now
	}
}

// idleSince returns when id was last active, or active=true while a
// request is open. A sandbox it knows nothing of is taken as active at
// now.
func (a *activity) idleSince(id string, now time.Time) (since time.Time, active bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.entry(id, now)
	return e.last, e.open > 0
}

// peek is idleSince without creating an entry; ok is false when there
// is none.
func (a *activity) peek(id string) (since time.Time, active, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.m[id]
	if e == nil {
		return time.Time{}, false, false
	}
	return e.last, e.open > 0, true
}

// deferAction makes due report false for id from now until at.
func (a *activity) deferAction(id string, now, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.entry(id, now).retryAt = at
}

// due reports whether the reaper may act on id at now.
func (a *activity) due(id string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.m[id]
	return e == nil || !now.Before(e.retryAt)
}

// keepOnly forgets the sandboxes for which running is false and that
// have no request open. running is called without a.mu held.
func (a *activity) keepOnly(running func(id string) bool) {
	a.mu.Lock()
	ids := make([]string, 0, len(a.m))
	for id := range a.m {
		ids = append(ids, id)
	}
	a.mu.Unlock()
	var gone []string
	for _, id := range ids {
		if !running(id) {
			gone = append(gone, id)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, id := range gone {
		if e := a.m[id]; e != nil && e.open == 0 {
			delete(a.m, id)
		}
	}
}

// forget drops id's entry.
func (a *activity) forget(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e := a.m[id]; e != nil && e.open == 0 {
		delete(a.m, id)
	}
}
