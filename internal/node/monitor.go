package node

import (
	"context"
	"errors"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/driver"
)

// watch records sandbox id as failed, with the reason, if it stops running
// on its own (a crash, the memory limit, a kill from outside). Drivers
// without driver.Waiter are not watched.
func (n *Node) watch(id string) {
	w, ok := n.drv(id).(driver.Waiter)
	if !ok {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-n.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		st, err := w.Wait(ctx, id)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			n.log.Warn("stopped watching sandbox", "sandbox", id, "err", err)
			return
		}
		n.died(ctx, id, st)
	}()
}

// died settles a sandbox whose processes ended without being asked to.
func (n *Node) died(ctx context.Context, id string, st driver.Status) {
	unlock := n.locks.lock(id)
	defer unlock()
	sb, err := n.records.Snapshot().Sandbox(id)
	if err != nil || sb.State != rest.StateRunning {
		return // deleted, being deleted or suspended: the stop was asked for
	}
	if st.Reason == driver.ReasonSuspended {
		return // a suspend stopped it; Resume starts a new watcher
	}
	// Resumed after a suspend meanwhile? Then a newer watcher follows it.
	// The runtime may call a dead sandbox running until its process is
	// reaped, so its guest agent must answer too.
	if now, err := n.drv(id).Status(ctx, id); err == nil && now.Running && n.guestAnswers(ctx, id) {
		return
	}
	reason := deathReason(st)
	n.log.Warn("sandbox stopped unexpectedly", "sandbox", id, "reason", st.Reason)
	if err := n.fail(ctx, id, reason); err != nil && !errors.Is(err, context.Canceled) {
		n.log.Error("record dead sandbox", "sandbox", id, "err", err)
	}
}

func deathReason(st driver.Status) string {
	switch st.Reason {
	case "oom":
		return "out of memory: the sandbox used more than its memory_mb limit and was stopped"
	case "":
		return "the sandbox stopped unexpectedly"
	}
	return "the sandbox stopped unexpectedly: " + st.Reason
}

// Close stops watching sandboxes and waits for the watchers to end.
// Sandboxes keep running.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { close(n.stop) })
	n.wg.Wait()
	return nil
}

// guestAnswers reports whether the guest agent of sandbox id accepts a
// connection within a second.
func (n *Node) guestAnswers(ctx context.Context, id string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := n.drv(id).DialGuest(ctx, id)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}
