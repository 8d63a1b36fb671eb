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
//
// A pass reads two indexes of the store, the running sandboxes by expiry
// (up to the first that has not expired) and those with an idle timeout,
// so that it costs the sandboxes it may act on, not every sandbox (a full
// pass every reapInterval cost 6% of a leader's CPU with 20k sandboxes).
func (s *Server) reap(ctx context.Context) {
	if s.cfg.Leading != nil && !s.cfg.Leading() {
		return
	}
	now := s.cfg.Now()
	sn := s.cfg.Store.Snapshot()
	var due []timerAction
	timedOut := map[string]bool{}
	err := sn.EachExpired(now, func(sb *store.Sandbox) bool {
		if s.activity.due(sb.ID, now) {
			timedOut[sb.ID] = true
			due = append(due, timerAction{id: sb.ID, cause: causeTimeout, action: actionOf(sb.TimeoutAction)})
		}
		return true
	})
	if err == nil {
		err = sn.EachIdleTimed(func(sb *store.Sandbox) bool {
			if a, ok := s.idleAction(sb, now); ok && !timedOut[sb.ID] {
				due = append(due, a)
			}
			return true
		})
	}
	if err != nil {
		s.log.Error("reaper: list sandboxes", "err", err)
		return
	}
	if now.Sub(s.swept) >= activitySweepInterval {
		s.swept = now
		s.activity.keepOnly(sn.SandboxRunning)
	}
	s.runActions(ctx, due)
}

// activitySweepInterval is how often the reaper drops what the activity
// tracker holds of sandboxes that no longer run.
const activitySweepInterval = 30 * time.Second

// idleAction returns the idle timeout's action on running sandbox sb at
// now, if it is due.
func (s *Server) idleAction(sb *store.Sandbox, now time.Time) (timerAction, bool) {
	if sb.IdleTimeoutSec <= 0 || !s.activity.due(sb.ID, now) {
		return timerAction{}, false
	}
	since, active := s.activity.idleSince(sb.ID, now)
	if !active && now.Sub(since) >= time.Duration(sb.IdleTimeoutSec)*time.Second {
		return timerAction{id: sb.ID, cause: causeIdle, action: actionOf(sb.IdleAction)}, true
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
