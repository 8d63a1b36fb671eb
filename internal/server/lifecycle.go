package server

import (
	"context"
	"sync"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/node"
	"github.com/denhq/den/internal/store"
)

// Suspend and resume. The node does the work; the server adds tenancy,
// the single-flight resume that sandbox traffic waits on (wake), and the
// bookkeeping of activity, proxies and metrics.

// lifecycleTimeout bounds a suspend or resume the server starts. They run
// on a context detached from the request, so a client that goes away
// never interrupts one half-way.
const lifecycleTimeout = 10 * time.Minute

// Causes of a suspend or resume, the label of their metrics.
const (
	causeAPI     = "api"     // an explicit call
	causeAuto    = "auto"    // sandbox traffic woke it
	causeTimeout = "timeout" // the timeout passed
	causeIdle    = "idle"    // the idle timeout passed
)

// SuspendSandbox suspends a running sandbox of p's tenant and returns the
// suspended record. FailedPrecondition when it is not running,
// Unsupported when the runtime cannot suspend.
func (s *Server) SuspendSandbox(ctx context.Context, p Principal, idOrName string) (*store.Sandbox, error) {
	sb, err := s.Lookup(p, idOrName)
	if err != nil {
		return nil, err
	}
	return s.suspend(ctx, sb.ID, causeAPI)
}

func (s *Server) suspend(ctx context.Context, id, cause string) (*store.Sandbox, error) {
	if err := s.checkSuspend(id); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lifecycleTimeout)
	defer cancel()
	sb, err := s.cfg.Node.Suspend(ctx, id)
	s.proxies.forget(id) // its guest connections ended with it
	if err != nil {
		return nil, err
	}
	s.metrics.suspends.WithLabelValues(cause).Inc()
	return sb, nil
}

// checkSuspend is Unsupported when sandbox id's runtime cannot suspend.
func (s *Server) checkSuspend(id string) error {
	runtime := ""
	if sb, err := s.cfg.Store.Snapshot().Sandbox(id); err == nil {
		runtime = sb.Runtime
	}
	return s.checkSnapshotsOn(runtime, "suspend")
}

// checkSnapshotsOn is Unsupported when runtime ("" the default) cannot
// do what (suspend, snapshot) to sandboxes.
func (s *Server) checkSnapshotsOn(runtime, what string) error {
	rt, err := s.cfg.Node.Runtime(runtime)
	if err != nil {
		return err
	}
	if !rt.Suspend {
		return errdefs.New(errdefs.Unsupported, "runtime %s cannot %s sandboxes", rt.Name, what)
	}
	return nil
}

// runtimeDetails describes runtimes rts for the API.
func runtimeDetails(rts []node.RuntimeInfo) []rest.RuntimeInfo {
	out := make([]rest.RuntimeInfo, len(rts))
	for i, r := range rts {
		out[i] = rest.RuntimeInfo{Name: r.Name, Isolation: r.Isolation, Accel: r.Accel, Default: r.Default, Suspend: r.Suspend, Pool: r.Pool}
	}
	return out
}

// runtimeNames are the names of runtimes rts.
func runtimeNames(rts []node.RuntimeInfo) []string {
	out := make([]string, len(rts))
	for i, r := range rts {
		out[i] = r.Name
	}
	return out
}

// ResumeSandbox resumes a suspended sandbox of p's tenant and returns the
// running record; a resume already under way (sandbox traffic woke it) is
// joined, and one being suspended is resumed once the suspend is done.
// FailedPrecondition when it is running or in any other state.
func (s *Server) ResumeSandbox(ctx context.Context, p Principal, idOrName string) (*store.Sandbox, error) {
	sb, err := s.Lookup(p, idOrName)
	if err != nil {
		return nil, err
	}
	if !asleep(sb.State) {
		return nil, errdefs.New(errdefs.FailedPrecondition, "sandbox %s is %s: only a suspended sandbox can be resumed", sb.ID, sb.State)
	}
	sb, _, err = s.wake(ctx, sb, causeAPI)
	return sb, err
}

// EnsureRunning returns a sandbox of p's tenant running: a suspended one
// is resumed first (resumed is then true), as every request that uses a
// sandbox does. FailedPrecondition for a sandbox that cannot run (failed,
// stopping).
func (s *Server) EnsureRunning(ctx context.Context, p Principal, idOrName string) (sb *store.Sandbox, resumed bool, err error) {
	sb, err = s.Lookup(p, idOrName)
	if err != nil {
		return nil, false, err
	}
	return s.wake(ctx, sb, causeAuto)
}

// WakeSandbox is EnsureRunning for a plane that authorised the request by
// the sandbox's own access token (E2B sandbox traffic).
func (s *Server) WakeSandbox(ctx context.Context, id string) (*store.Sandbox, error) {
	sb, err := s.Sandbox(id)
	if err != nil {
		return nil, err
	}
	sb, _, err = s.wake(ctx, sb, causeAuto)
	return sb, err
}

// asleep reports whether a sandbox in state st becomes running by a resume.
func asleep(st string) bool {
	return st == rest.StateSuspended || st == rest.StateSuspending || st == rest.StateResuming
}

// wakeCalls is the single flight of resumes: concurrent wakes of one
// sandbox share one node.Resume.
type wakeCalls struct {
	mu sync.Mutex
	m  map[string]*wakeCall
}

type wakeCall struct {
	done chan struct{} // closed when sb and err are set
	sb   *store.Sandbox
	err  error
	// joined counts the callers waiting on the first one (guarded by
	// wakeCalls.mu; tests read it).
	joined int
}

// wake returns sb running, resuming it when it is asleep. The first
// caller runs the resume itself, on a context detached from its own; the
// others wait for it (and may give up when their context ends). resumed
// is true for every caller that waited on a resume.
func (s *Server) wake(ctx context.Context, sb *store.Sandbox, cause string) (*store.Sandbox, bool, error) {
	now := s.cfg.Now()
	if sb.State == rest.StateRunning {
		s.activity.touch(sb.ID, now)
		return sb, false, nil
	}
	if !asleep(sb.State) {
		return nil, false, errdefs.New(errdefs.FailedPrecondition, "sandbox %s is %s, not running", sb.ID, sb.State)
	}
	s.wakes.mu.Lock()
	c := s.wakes.m[sb.ID]
	if c != nil {
		c.joined++
		s.wakes.mu.Unlock()
		select {
		case <-c.done:
			return c.sb, true, c.err
		case <-ctx.Done():
			return nil, false, errdefs.Wrap(errdefs.Canceled, ctx.Err(), "wait for sandbox %s to resume", sb.ID)
		}
	}
	c = &wakeCall{done: make(chan struct{})}
	s.wakes.m[sb.ID] = c
	s.wakes.mu.Unlock()

	c.sb, c.err = s.resumeOnce(ctx, sb.ID, cause)
	s.wakes.mu.Lock()
	delete(s.wakes.m, sb.ID)
	s.wakes.mu.Unlock()
	close(c.done)
	return c.sb, true, c.err
}

// resumeOnce resumes id on the node. A sandbox that another caller
// resumed meanwhile is returned as it is.
func (s *Server) resumeOnce(ctx context.Context, id, cause string) (*store.Sandbox, error) {
	if rec, err := s.cfg.Store.Snapshot().Sandbox(id); err == nil && !holdsResources(rec.State) {
		// A resume takes back CPUs and memory: the tenant's quota must
		// have room (the check and the resume are not atomic).
		if err := s.admit(rec.Tenant, Usage{VCPUs: rec.CPUs, MemoryMB: rec.MemoryMB}, func() error { return nil }); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lifecycleTimeout)
	defer cancel()
	sb, err := s.cfg.Node.Resume(ctx, id)
	if errdefs.Is(err, errdefs.FailedPrecondition) {
		if cur, gerr := s.cfg.Store.Snapshot().Sandbox(id); gerr == nil && cur.State == rest.StateRunning {
			sb, err = cur, nil
		}
	}
	if err != nil {
		return nil, err
	}
	s.proxies.forget(id) // connections of before the suspend are dead
	s.activity.touch(id, s.cfg.Now())
	s.metrics.resumes.WithLabelValues(cause).Inc()
	return sb, nil
}
