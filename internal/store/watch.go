package store

import "context"

// SandboxesChanged returns a channel that is closed once any sandbox is
// created, updated or deleted after sn was taken (including by a snapshot
// restore). The race-free wait loop is: take a snapshot, read it, wait on its
// channel, repeat.
func (sn *Snapshot) SandboxesChanged() <-chan struct{} {
	it, err := sn.db.Txn(false).Get(tableSandboxes, indexID)
	if err != nil {
		// Only on a schema bug. A closed channel makes the caller re-read
		// rather than sleep forever.
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return it.WatchCh()
}

// Watch returns a channel that receives a value after any sandbox change,
// so reconcilers and reapers can wake without polling. Signals coalesce:
// one value may stand for many changes, so a receiver re-reads a fresh
// Snapshot each time. Changes made before Watch returns may or may not be
// signalled. The channel is closed when ctx ends or the store closes; the
// goroutine behind it belongs to the Store, which waits for it in Close.
func (s *Store) Watch(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		close(out)
		return out
	}
	s.wg.Add(1)
	go s.watch(ctx, s.Snapshot().SandboxesChanged(), out)
	return out
}

func (s *Store) watch(ctx context.Context, changed <-chan struct{}, out chan<- struct{}) {
	defer s.wg.Done()
	defer close(out)
	for {
		select {
		case <-changed:
		case <-ctx.Done():
			return
		case <-s.done:
			return
		}
		// Re-arm before signalling so no change after the signal is missed.
		changed = s.Snapshot().SandboxesChanged()
		select {
		case out <- struct{}{}:
		default: // a signal is already pending
		}
	}
}
