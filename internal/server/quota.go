package server

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

// Tenancy limits: a tenant's quota bounds what it holds, checked when a
// sandbox is recorded, resumed or snapshotted; its rate limit bounds its
// API requests, checked when a key authenticates. A tenant without a
// record, or with zero limits, has none.

// Usage is what a tenant holds, in a quota's terms.
type Usage struct {
	Sandboxes int
	VCPUs     float64
	MemoryMB  int64
	Snapshots int
}

// holdsResources reports whether a sandbox in state counts toward the
// vCPU and memory quotas: it does unless it ended or is suspended.
func holdsResources(state string) bool {
	return !store.IsTerminal(state) && state != rest.StateSuspended
}

// usageOf sums what tenant holds in snap.
func usageOf(snap *store.Snapshot, tenant string) (Usage, error) {
	var u Usage
	f := store.SandboxFilter{Tenant: tenant, Limit: 1000}
	for {
		page, next, err := snap.Sandboxes(f)
		if err != nil {
			return u, err
		}
		for _, sb := range page {
			if store.IsTerminal(sb.State) {
				continue
			}
			u.Sandboxes++
			if holdsResources(sb.State) {
				u.VCPUs += sb.CPUs
				u.MemoryMB += sb.MemoryMB
			}
		}
		if next == "" {
			break
		}
		f.PageToken = next
	}
	snaps, err := snap.SandboxSnapshots(tenant)
	if err != nil {
		return u, err
	}
	u.Snapshots = len(snaps)
	return u, nil
}

// quotas serialises the quota check and the record write of creates, so
// that two creates cannot both pass a check that only one fits.
type quotas struct {
	mu sync.Mutex
	// snapshotting counts each tenant's snapshots being taken (not yet
	// recorded).
	snapshotting map[string]int
}

// admit checks that tenant may hold more (sandboxes, vCPUs, memory and
// snapshots added to what it holds) and, when it may, runs record while
// no other admission runs. ResourceExhausted (HTTP 429) names the quota.
func (s *Server) admit(tenant string, more Usage, record func() error) error {
	s.quotas.mu.Lock()
	defer s.quotas.mu.Unlock()
	snap := s.cfg.Store.Snapshot()
	t, err := snap.Tenant(tenant)
	if errdefs.IsNotFound(err) {
		return record()
	}
	if err != nil {
		return err
	}
	u, err := usageOf(snap, tenant)
	if err != nil {
		return err
	}
	u.Snapshots += s.quotas.snapshotting[tenant]
	if err := checkQuota(t, u, more); err != nil {
		return err
	}
	return record()
}

// checkQuota reports the first quota of t that u plus more exceeds.
func checkQuota(t *store.Tenant, u, more Usage) error {
	q := t.Quota
	over := func(what string, limit, have, want any) error {
		return errdefs.New(errdefs.ResourceExhausted, "tenant %s is at its quota of %v %s (it holds %v, this needs %v more): delete or suspend some, or ask an admin to raise it (den tenant set %s)", t.ID, limit, what, have, want, t.ID)
	}
	switch {
	case more.Sandboxes > 0 && q.Sandboxes > 0 && u.Sandboxes+more.Sandboxes > q.Sandboxes:
		return over("sandboxes", q.Sandboxes, u.Sandboxes, more.Sandboxes)
	case more.VCPUs > 0 && q.VCPUs > 0 && u.VCPUs+more.VCPUs > q.VCPUs+1e-9:
		return over("vCPUs", q.VCPUs, u.VCPUs, more.VCPUs)
	case more.MemoryMB > 0 && q.MemoryMB > 0 && u.MemoryMB+more.MemoryMB > q.MemoryMB:
		return over("MiB of memory", q.MemoryMB, u.MemoryMB, more.MemoryMB)
	case more.Snapshots > 0 && q.Snapshots > 0 && u.Snapshots+more.Snapshots > q.Snapshots:
		return over("snapshots", q.Snapshots, u.Snapshots, more.Snapshots)
	}
	return nil
}

// needs is what recording sbs adds to a tenant's usage.
func needs(sbs ...*store.Sandbox) Usage {
	var u Usage
	for _, sb := range sbs {
		u.Sandboxes++
		u.VCPUs += sb.CPUs
		u.MemoryMB += sb.MemoryMB
	}
	return u
}

// beginSnapshot admits one more snapshot of tenant and counts it as held
// until the returned func runs (after the snapshot is recorded or failed).
func (s *Server) beginSnapshot(tenant string) (func(), error) {
	err := s.admit(tenant, Usage{Snapshots: 1}, func() error {
		if s.quotas.snapshotting == nil {
			s.quotas.snapshotting = map[string]int{}
		}
		s.quotas.snapshotting[tenant]++
		return nil
	})
	if err != nil {
		return nil, err
	}
	return func() {
		s.quotas.mu.Lock()
		defer s.quotas.mu.Unlock()
		if s.quotas.snapshotting[tenant]--; s.quotas.snapshotting[tenant] <= 0 {
			delete(s.quotas.snapshotting, tenant)
		}
	}, nil
}

// rateLimits keeps a token bucket per tenant, made from its record's
// rate limit and remade when the record changes. Buckets live in this
// server process: a cluster of n servers lets a tenant n times its rate
// at most.
type rateLimits struct {
	mu sync.Mutex
	m  map[string]*tenantBucket
}

type tenantBucket struct {
	conf store.RateLimit
	lim  *rate.Limiter
}

// allow takes one request of tenant from its bucket; a refusal says when
// a token is next available (HTTP 429 with Retry-After).
func (s *Server) allow(tenant string) error {
	t, err := s.cfg.Store.Snapshot().Tenant(tenant)
	if err != nil || t.RateLimit.PerSecond <= 0 {
		return nil
	}
	rl := &s.rates
	rl.mu.Lock()
	b := rl.m[tenant]
	if b == nil || b.conf != t.RateLimit {
		burst := t.RateLimit.Burst
		if burst <= 0 {
			burst = max(1, int(t.RateLimit.PerSecond))
		}
		b = &tenantBucket{conf: t.RateLimit, lim: rate.NewLimiter(rate.Limit(t.RateLimit.PerSecond), burst)}
		if rl.m == nil {
			rl.m = map[string]*tenantBucket{}
		}
		rl.m[tenant] = b
	}
	rl.mu.Unlock()
	now := s.cfg.Now()
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return errdefs.TooManyRequests(d, "tenant %s is over its rate limit of %s: retry after %s", tenant, rateText(t.RateLimit), d.Round(time.Millisecond))
	}
	return nil
}

// rateText describes a rate limit for messages.
func rateText(r store.RateLimit) string {
	return fmt.Sprintf("%g requests/s (bursts of %d)", r.PerSecond, r.Burst)
}
