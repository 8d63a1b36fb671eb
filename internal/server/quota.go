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

// quotas holds what admissions reserved and the store does not show yet
// (creates being recorded, snapshots being taken), so that two
// admissions cannot both pass a check that only one fits. The check and
// the reservation are one step under mu; the record write is not, so
// writes of one tenant proceed in parallel.
type quotas struct {
	mu      sync.Mutex
	pending map[string]*reservation // by tenant; guarded by mu
}

type reservation struct {
	Usage
	n int // reservations held
}

// admit checks that tenant may hold more (sandboxes, vCPUs, memory and
// snapshots added to what it holds) and, when it may, runs record with
// more reserved. ResourceExhausted (HTTP 429) names the quota.
func (s *Server) admit(tenant string, more Usage, record func() error) error {
	release, err := s.reserve(tenant, more)
	if err != nil {
		return err
	}
	defer release()
	return record()
}

// reserve checks that tenant may hold more and counts it as held until
// release runs: after the store shows it, or it failed. A tenant without
// a record or without limits reserves nothing.
func (s *Server) reserve(tenant string, more Usage) (release func(), err error) {
	t, err := s.cfg.Store.Snapshot().Tenant(tenant)
	if errdefs.IsNotFound(err) || (err == nil && t.Quota == (store.Quota{})) {
		return func() {}, nil
	}
	if err != nil {
		return nil, err
	}
	s.quotas.mu.Lock()
	defer s.quotas.mu.Unlock()
	// Taken under mu: it shows every record whose reservation is gone.
	u, err := usageOf(s.cfg.Store.Snapshot(), tenant)
	if err != nil {
		return nil, err
	}
	r := s.quotas.pending[tenant]
	if r != nil {
		u.Sandboxes, u.VCPUs, u.MemoryMB, u.Snapshots = u.Sandboxes+r.Sandboxes, u.VCPUs+r.VCPUs, u.MemoryMB+r.MemoryMB, u.Snapshots+r.Snapshots
	}
	if err := checkQuota(t, u, more); err != nil {
		return nil, err
	}
	if r == nil {
		if s.quotas.pending == nil {
			s.quotas.pending = map[string]*reservation{}
		}
		r = &reservation{}
		s.quotas.pending[tenant] = r
	}
	r.n++
	r.Sandboxes, r.VCPUs, r.MemoryMB, r.Snapshots = r.Sandboxes+more.Sandboxes, r.VCPUs+more.VCPUs, r.MemoryMB+more.MemoryMB, r.Snapshots+more.Snapshots
	var once sync.Once
	return func() {
		once.Do(func() {
			s.quotas.mu.Lock()
			defer s.quotas.mu.Unlock()
			r.n--
			r.Sandboxes, r.VCPUs, r.MemoryMB, r.Snapshots = r.Sandboxes-more.Sandboxes, r.VCPUs-more.VCPUs, r.MemoryMB-more.MemoryMB, r.Snapshots-more.Snapshots
			if r.n == 0 {
				delete(s.quotas.pending, tenant)
			}
		})
	}, nil
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
	return s.reserve(tenant, Usage{Snapshots: 1})
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
