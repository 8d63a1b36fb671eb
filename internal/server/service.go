package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

// The service layer: den's sandbox logic as methods that take a Principal
// and return store records and classified errors. The /v1 handlers and
// other API facades (internal/e2b) are thin wire adapters over them, so
// validation, tenancy and lifecycle rules live in one place.

// CreateSandbox validates req, records the sandbox for p's tenant and
// starts it on the node. It returns the running record; a start failure is
// returned as is (the record stays, failed, with the reason). Every sandbox
// gets a fresh AccessToken.
func (s *Server) CreateSandbox(ctx context.Context, p Principal, req rest.CreateSandboxRequest) (*store.Sandbox, error) {
	if req.CapacityWait < 0 || req.CapacityWait > rest.MaxCapacityWaitSeconds {
		return nil, errdefs.New(errdefs.InvalidArgument, "capacity_wait must be between 0 and %d seconds, got %d", rest.MaxCapacityWaitSeconds, req.CapacityWait)
	}
	if req.Pool != "" && req.Runtime != "" {
		if rt, err := s.cfg.Node.Runtime(req.Runtime); err != nil {
			return nil, err
		} else if !rt.Pool {
			return nil, errdefs.New(errdefs.InvalidArgument, "runtime %s keeps no warm pools: leave runtime unset to claim from pool %s", rt.Name, req.Pool)
		}
	}
	if req.Pool != "" {
		var err error
		if req, err = s.poolForCreate(p, req); err != nil {
			return nil, err
		}
	}
	if req.Snapshot != "" {
		return s.createFromSnapshot(ctx, p, req)
	}
	sb, err := s.newSandboxRecord(req, p)
	if err != nil {
		return nil, err
	}
	if _, err := s.cfg.Images.Get(sb.Image); err != nil {
		return nil, err
	}
	if sb.User != "" && !s.ImageHasUser(sb.Image, sb.User) {
		return nil, errdefs.New(errdefs.InvalidArgument, "user %q not found in image %s", sb.User, sb.Image)
	}
	return s.recordAndStart(ctx, sb, capacityWait(req))
}

// capacityWait is how long req's create may wait for a node with room.
func capacityWait(req rest.CreateSandboxRequest) time.Duration {
	return time.Duration(req.CapacityWait) * time.Second
}

// recordAndStart stores the record of new sandbox sb and starts it on the
// node from its image, counting the create in the metrics. In a cluster it
// first places sb, waiting up to wait for room.
func (s *Server) recordAndStart(ctx context.Context, sb *store.Sandbox, wait time.Duration) (*store.Sandbox, error) {
	start := s.cfg.Now()
	undo := func() {}
	if pl, ok := s.cfg.Node.(Placer); ok {
		var err error
		if undo, err = pl.Place(ctx, sb, wait); err != nil {
			return nil, err
		}
	}
	started, err := s.startClaimed(ctx, sb)
	if err != nil { // nothing recorded, as when admit refuses
		undo()
		return nil, err
	}
	if started == nil {
		if err := s.admit(sb.Tenant, needs(sb), func() error { return s.cfg.Store.CreateSandbox(ctx, sb) }); err != nil {
			undo()
			return nil, err
		}
		started, err = s.cfg.Node.Start(ctx, sb.ID)
	}
	if err != nil {
		s.metrics.createFailures.Inc()
		return nil, err
	}
	s.metrics.createSeconds.Observe(s.cfg.Now().Sub(start).Seconds())
	s.activity.touch(sb.ID, s.cfg.Now())
	return started, nil
}

// startClaimed starts sb from a warm spare with one store write, on a node
// that keeps spares (see Claimer); nil and no error when it cannot. The
// tenant's quota is reserved before the claim, so that a create over it
// takes no spare.
func (s *Server) startClaimed(ctx context.Context, sb *store.Sandbox) (*store.Sandbox, error) {
	c, ok := s.cfg.Node.(Claimer)
	if !ok {
		return nil, nil
	}
	release, err := s.reserve(sb.Tenant, needs(sb))
	if err != nil {
		return nil, err
	}
	defer release()
	return c.StartClaimed(ctx, sb, func(rec *store.Sandbox) error { return s.cfg.Store.CreateSandbox(ctx, rec) })
}

// Lookup finds a sandbox of p's tenant by ID or name; NotFound for a
// sandbox of another tenant, exactly as for one that does not exist. It
// is for calls that use the sandbox: each counts as activity (idle
// timeout). Calls that only read its record use Inspect.
func (s *Server) Lookup(p Principal, idOrName string) (*store.Sandbox, error) {
	sb, err := s.Inspect(p, idOrName)
	if err != nil {
		return nil, err
	}
	if sb.State == rest.StateRunning {
		s.activity.touch(sb.ID, s.cfg.Now())
	}
	return sb, nil
}

// Inspect is Lookup for calls that only read the record (get, list,
// metrics): it does not count as activity, so watching a sandbox does
// not keep it from going idle.
func (s *Server) Inspect(p Principal, idOrName string) (*store.Sandbox, error) {
	snap := s.cfg.Store.Snapshot()
	sb, err := snap.Sandbox(idOrName)
	if err == nil && sb.Tenant == p.Tenant {
		return sb, nil
	}
	if sb, err := snap.SandboxByName(p.Tenant, idOrName); err == nil {
		return sb, nil
	}
	return nil, errdefs.New(errdefs.NotFound, "sandbox %s not found", idOrName)
}

// Sandbox returns the sandbox with id, whatever its tenant. It is for
// planes that authorise a request by the sandbox's own AccessToken (E2B
// sandbox traffic), never by API key: those use Lookup.
func (s *Server) Sandbox(id string) (*store.Sandbox, error) {
	sb, err := s.cfg.Store.Snapshot().Sandbox(id)
	if err != nil {
		return nil, errdefs.New(errdefs.NotFound, "sandbox %s not found", id)
	}
	return sb, nil
}

// ListSandboxes returns one page of p's sandboxes matching f and the token
// of the next page ("" on the last). f.Tenant is overridden with p's.
func (s *Server) ListSandboxes(p Principal, f store.SandboxFilter) ([]*store.Sandbox, string, error) {
	f.Tenant = p.Tenant
	return s.cfg.Store.Snapshot().Sandboxes(f)
}

// DeleteSandbox destroys a sandbox of p's tenant and removes its record.
func (s *Server) DeleteSandbox(ctx context.Context, p Principal, idOrName string) error {
	sb, err := s.Lookup(p, idOrName)
	if err != nil {
		return err
	}
	s.proxies.forget(sb.ID)
	s.activity.forget(sb.ID)
	s.ports.forget(sb.ID)
	return s.cfg.Node.Destroy(ctx, sb.ID)
}

// SetTimeout sets a sandbox's timeout to seconds from now (0 removes it)
// and returns the updated record. For a suspended sandbox the seconds are
// of running life: they count from its resume.
func (s *Server) SetTimeout(ctx context.Context, p Principal, idOrName string, seconds int64) (*store.Sandbox, error) {
	if seconds < 0 || seconds > rest.MaxTimeoutSeconds {
		return nil, errdefs.New(errdefs.InvalidArgument, "timeout must be between 0 (none) and %d seconds, got %d", rest.MaxTimeoutSeconds, seconds)
	}
	for attempt := 0; ; attempt++ {
		sb, err := s.Lookup(p, idOrName)
		if err != nil {
			return nil, err
		}
		next := *sb
		next.TimeoutSec, next.ExpiresAt, next.TimeoutLeftMs = seconds, time.Time{}, 0
		switch {
		case seconds == 0:
		case sb.State == rest.StateSuspended || sb.State == rest.StateResuming:
			next.TimeoutLeftMs = seconds * 1000 // the timer runs again from the resume
		default:
			next.ExpiresAt = s.cfg.Now().UTC().Add(time.Duration(seconds) * time.Second)
		}
		err = s.cfg.Store.UpdateSandbox(ctx, &next)
		if err == nil {
			return &next, nil
		}
		if !errdefs.Is(err, errdefs.Conflict) || attempt >= 10 {
			return nil, err
		}
	}
}

// Stats reads the resource usage of a running sandbox of p's tenant.
func (s *Server) Stats(ctx context.Context, p Principal, idOrName string) (driver.Stats, error) {
	sb, err := s.Inspect(p, idOrName)
	if err != nil {
		return driver.Stats{}, err
	}
	if sb.State != rest.StateRunning {
		return driver.Stats{}, errdefs.New(errdefs.FailedPrecondition, "sandbox %s is %s, not running", sb.ID, sb.State)
	}
	return s.cfg.Node.Stats(ctx, sb.ID)
}

// GuestProxy is the reverse proxy to sandbox id's guest agent. It forwards
// a request with its path as the guest path, minus den's credentials (API
// key, access token), and streams the response unbuffered. The caller has
// authorised the request and checked that the sandbox runs (waking it
// with EnsureRunning or WakeSandbox). The guest's internal routes (POST
// /init) answer NotFound and are never forwarded. The sandbox counts as
// active for as long as the request lasts (a stream: until it ends).
func (s *Server) GuestProxy(id string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isInternalGuestPath(r.URL.Path) {
			writeError(w, errdefs.New(errdefs.NotFound, "no route for %s %s", r.Method, r.URL.Path))
			return
		}
		s.activity.begin(id, s.cfg.Now())
		defer func() { s.activity.end(id, s.cfg.Now()) }()
		// Connect streams may send the request body after the guest has
		// answered the headers; HTTP/1 servers drop an unread request body
		// once the response starts unless full duplex is on, and the proxy
		// would then abort the stream mid-way.
		_ = http.NewResponseController(w).EnableFullDuplex()
		serveWaitingForRequestEnd(delayFlushes(s.proxies.get(id), guestFlushDelay), w, r)
	})
}

// ImageHasUser reports whether the /etc/passwd of image names user. It
// reads the topmost layer that has the file (a whiteout is not honoured:
// images do not delete their passwd file).
func (s *Server) ImageHasUser(image, user string) bool {
	rootfs, err := s.cfg.Images.Rootfs(image)
	if err != nil {
		return false
	}
	for _, layer := range rootfs.Layers {
		data, err := os.ReadFile(filepath.Join(layer, "etc", "passwd"))
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(data)) {
			if name, _, ok := strings.Cut(line, ":"); ok && name == user {
				return true
			}
		}
		return false
	}
	return false
}

// newAccessToken returns a random secret for sandbox traffic.
func newAccessToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
