package server

import (
	"context"
	"sync"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

// reapInterval is how often the reaper looks at running sandboxes.
const reapInterval = 500 * time.Millisecond

// reapWorkers bounds the timer actions (kills, suspends) one pass runs at
// once.
const reapWorkers = 8

// reapRetry is how long the reaper waits before it acts again on a
// sandbox whose action failed.
const reapRetry = time.Minute

// Run runs the server's background loops until ctx ends: the reaper that
// applies the timeout and idle timeout actions.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(reapInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.reap(ctx)
		}
	}
}

// timerAction is what the reaper does to one sandbox.
type timerAction struct {
	id     string
	cause  string // causeTimeout or causeIdle
	action string // rest.ActionKill or rest.ActionSuspend
}

// reap applies the actions of the running sandboxes whose timeout passed
// (ExpiresAt at or before now) or that were idle for their idle timeout
// (no activity, no request open). The actions of one pass run
// concurrently, reap returns when all are done. Suspended sandboxes are
// never looked at: their timers do not run.
func (s *Server) reap(ctx context.Context) {
	now := s.cfg.Now()
	var due []timerAction
	live := map[string]bool{}
	// One pass over the snapshot's own records, no copies: it runs every
	// reapInterval over every running sandbox (a paged, copying list of
	// them cost 9% of a leader's CPU with 10k sandboxes).
	err := s.cfg.Store.Snapshot().EachSandbox(rest.StateRunning, func(sb *store.Sandbox) bool {
		live[sb.ID] = true
		if a, ok := s.dueAction(sb, now); ok {
			due = append(due, a)
		}
		return true
	})
	if err != nil {
		s.log.Error("reaper: list sandboxes", "err", err)
		return
	}
	s.activity.keepOnly(live)
	s.runActions(ctx, due)
}

// dueAction returns the action due on running sandbox sb at now, if any.
func (s *Server) dueAction(sb *store.Sandbox, now time.Time) (timerAction, bool) {
	if !s.activity.due(sb.ID, now) {
		return timerAction{}, false
	}
	if !sb.ExpiresAt.IsZero() && !sb.ExpiresAt.After(now) {
		return timerAction{id: sb.ID, cause: causeTimeout, action: actionOf(sb.TimeoutAction)}, true
	}
	if sb.IdleTimeoutSec > 0 {
		since, active := s.activity.idleSince(sb.ID, now)
		if !active && now.Sub(since) >= time.Duration(sb.IdleTimeoutSec)*time.Second {
			return timerAction{id: sb.ID, cause: causeIdle, action: actionOf(sb.IdleAction)}, true
		}
	}
	return timerAction{}, false
}

// runActions applies the actions, reapWorkers at a time, and waits for
// them.
func (s *Server) runActions(ctx context.Context, due []timerAction) {
	sem := make(chan struct{}, reapWorkers)
	var wg sync.WaitGroup
	for _, a := range due {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s.apply(ctx, a)
		})
	}
	wg.Wait()
}

// apply applies one timer action. A suspend the runtime cannot do
// becomes a kill (a timeout must end the sandbox's run); a failed action
// is tried again after reapRetry.
func (s *Server) apply(ctx context.Context, a timerAction) {
	if a.cause == causeIdle && !s.stillIdle(a.id) {
		return // a request came since the pass began
	}
	if a.action == rest.ActionSuspend {
		_, err := s.suspend(ctx, a.id, a.cause)
		switch {
		case err == nil:
			s.log.Info("sandbox suspended by its timer", "sandbox", a.id, "timer", a.cause)
			return
		case errdefs.Is(err, errdefs.FailedPrecondition) || errdefs.IsNotFound(err):
			return // no longer running: nothing to do
		case !errdefs.Is(err, errdefs.Unsupported):
			s.log.Warn("reaper: suspend", "sandbox", a.id, "timer", a.cause, "err", err)
			s.activity.deferAction(a.id, s.cfg.Now(), s.cfg.Now().Add(reapRetry))
			return
		}
		s.log.Warn("reaper: the runtime cannot suspend; removing the sandbox instead", "sandbox", a.id, "timer", a.cause)
	}
	s.proxies.forget(a.id)
	if err := s.cfg.Node.Destroy(ctx, a.id); err != nil {
		s.log.Warn("reaper: destroy sandbox", "sandbox", a.id, "timer", a.cause, "err", err)
		s.activity.deferAction(a.id, s.cfg.Now(), s.cfg.Now().Add(reapRetry))
		return
	}
	s.activity.forget(a.id)
	if a.cause == causeTimeout {
		s.metrics.reaped.Inc()
	} else {
		s.metrics.idleKills.Inc()
	}
	s.log.Info("sandbox removed by its timer", "sandbox", a.id, "timer", a.cause)
}

// stillIdle re-checks, right before its idle action, that sandbox id is
// still idle: a request that came meanwhile wins.
func (s *Server) stillIdle(id string) bool {
	sb, err := s.cfg.Store.Snapshot().Sandbox(id)
	if err != nil || sb.State != rest.StateRunning || sb.IdleTimeoutSec == 0 {
		return false
	}
	now := s.cfg.Now()
	since, active := s.activity.idleSince(id, now)
	return !active && now.Sub(since) >= time.Duration(sb.IdleTimeoutSec)*time.Second
}
