package server

import (
	"context"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/store"
)

// Run runs the server's background loops until ctx ends: the reaper that
// removes sandboxes past their timeout.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.reapExpired(ctx)
		}
	}
}

// reapExpired destroys running sandboxes whose ExpiresAt has passed.
func (s *Server) reapExpired(ctx context.Context) {
	now := s.cfg.Now()
	token := ""
	for {
		page, next, err := s.cfg.Store.Snapshot().Sandboxes(store.SandboxFilter{
			States: []string{rest.StateRunning}, Limit: 500, PageToken: token,
		})
		if err != nil {
			s.log.Error("reaper: list sandboxes", "err", err)
			return
		}
		for _, sb := range page {
			if sb.ExpiresAt.IsZero() || sb.ExpiresAt.After(now) {
				continue
			}
			s.proxies.forget(sb.ID)
			if err := s.cfg.Node.Destroy(ctx, sb.ID); err != nil {
				s.log.Warn("reaper: destroy expired sandbox", "sandbox", sb.ID, "err", err)
				continue
			}
			s.metrics.reaped.Inc()
			s.log.Info("sandbox timed out and was removed", "sandbox", sb.ID)
		}
		if next == "" {
			return
		}
		token = next
	}
}
