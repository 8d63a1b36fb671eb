package node

import (
	"context"
	"errors"
	"net/http"
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

// guestAnswerWait bounds guestAnswers. A live agent answers in
// milliseconds; a dead sandbox's socket may still take connections
// that nobody accepts, and those wait for the whole of it.
const guestAnswerWait = 3 * time.Second

// guestAnswers reports whether the guest agent of sandbox id answers GET
// /health. Accepting a connection is not enough: a gVisor sandbox whose
// sentry has died leaves its listening socket with the gofer for a moment,
// and a connection made then is taken by the kernel and never answered.
func (n *Node) guestAnswers(ctx context.Context, id string) bool {
	ctx, cancel := context.WithTimeout(ctx, guestAnswerWait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, guestURL+"/health", nil)
	if err != nil {
		return false
	}
	resp, err := n.guestHTTP(id).Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode/100 == 2
}
