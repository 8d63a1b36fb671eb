package server

import (
	"crypto/rand"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

func (s *Server) createSandbox(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req rest.CreateSandboxRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	sb, err := s.CreateSandbox(r.Context(), p, req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, s.toREST(sb))
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// newSandboxRecord validates req, applies defaults and returns the record
// to store. Every error is InvalidArgument and names the field.
func (s *Server) newSandboxRecord(req rest.CreateSandboxRequest, p Principal) (*store.Sandbox, error) {
	req.ApplyDefaults()
	if err := validateCreate(req); err != nil {
		return nil, err
	}
	rt, err := s.cfg.Node.Runtime(req.Runtime)
	if err != nil {
		return nil, err
	}
	if !rt.Suspend && (req.TimeoutAction == rest.ActionSuspend || req.IdleAction == rest.ActionSuspend) {
		return nil, errdefs.New(errdefs.Unsupported, `runtime %s cannot suspend sandboxes: timeout_action and idle_action must be "kill"`, rt.Name)
	}
	pol, err := networkPolicy(req.Network)
	if err != nil {
		return nil, err
	}
	ports, err := publicPorts(req.PublicPorts)
	if err != nil {
		return nil, err
	}
	return &store.Sandbox{
		ID: newSandboxID(), Name: req.Name, Tenant: p.Tenant, Image: req.Image, Network: pol,
		State: rest.StateStarting, Runtime: rt.Name, Node: s.cfg.Node.ID(),
		CPUs: req.CPUs, MemoryMB: req.MemoryMB, DiskMB: req.DiskMB,
		Env: req.Env, Metadata: req.Metadata, TimeoutSec: *req.Timeout, TimeoutAction: req.TimeoutAction,
		IdleTimeoutSec: req.IdleTimeout, IdleAction: req.IdleAction,
		User: req.User, AccessToken: newAccessToken(), CreatedAt: s.cfg.Now().UTC(),
		PublicPorts: ports,
	}, nil
}

func validateCreate(req rest.CreateSandboxRequest) error {
	bad := func(format string, args ...any) error { return errdefs.New(errdefs.InvalidArgument, format, args...) }
	switch {
	case req.CPUs < 0 || req.CPUs > rest.MaxCPUs || math.IsNaN(req.CPUs):
		return bad("cpus must be between 0.01 and %d, got %v", rest.MaxCPUs, req.CPUs)
	case req.CPUs < 0.01:
		return bad("cpus must be at least 0.01, got %v", req.CPUs)
	case req.MemoryMB < rest.MinMemoryMB || req.MemoryMB > rest.MaxMemoryMB:
		return bad("memory_mb must be between %d and %d, got %d", rest.MinMemoryMB, rest.MaxMemoryMB, req.MemoryMB)
	case req.DiskMB < rest.MinDiskMB || req.DiskMB > rest.MaxDiskMB:
		return bad("disk_mb must be between %d and %d, got %d", rest.MinDiskMB, rest.MaxDiskMB, req.DiskMB)
	case *req.Timeout < 0 || *req.Timeout > rest.MaxTimeoutSeconds:
		return bad("timeout must be between 0 (none) and %d seconds, got %d", rest.MaxTimeoutSeconds, *req.Timeout)
	case req.IdleTimeout < 0 || req.IdleTimeout > rest.MaxTimeoutSeconds:
		return bad("idle_timeout must be between 0 (none) and %d seconds, got %d", rest.MaxTimeoutSeconds, req.IdleTimeout)
	case !validAction(req.TimeoutAction):
		return bad(`timeout_action must be "kill" or "suspend", got %q`, req.TimeoutAction)
	case !validAction(req.IdleAction):
		return bad(`idle_action must be "kill" or "suspend", got %q`, req.IdleAction)
	case req.Name != "" && !nameRE.MatchString(req.Name):
		return bad("name %q is invalid: use 1-63 lowercase letters, digits and dashes", req.Name)
	}
	for k := range req.Env {
		if !envKeyRE.MatchString(k) {
			return bad("env name %q is invalid: use letters, digits and _, not starting with a digit", k)
		}
	}
	for k, v := range req.Metadata {
		if k == "" || len(k) > 256 || len(v) > 4096 {
			return bad("metadata key %q is invalid: keys are 1-256 bytes, values at most 4096", k)
		}
	}
	return nil
}

func validAction(a string) bool { return a == rest.ActionKill || a == rest.ActionSuspend }

const idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// newSandboxID returns 20 random lowercase letters and digits (~103 bits),
// usable as a DNS label.
func newSandboxID() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	if b[0] >= '0' && b[0] <= '9' {
		b[0] = 'a' + b[0] - '0'
	}
	return string(b)
}

func (s *Server) getSandbox(w http.ResponseWriter, r *http.Request, p Principal) error {
	sb, err := s.Inspect(p, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.toREST(sb))
}

func (s *Server) listSandboxes(w http.ResponseWriter, r *http.Request, p Principal) error {
	f, err := parseListFilter(r, p)
	if err != nil {
		return err
	}
	page, next, err := s.ListSandboxes(p, f)
	if err != nil {
		return err
	}
	out := rest.SandboxList{Sandboxes: make([]rest.Sandbox, 0, len(page)), NextPageToken: next}
	for _, sb := range page {
		out.Sandboxes = append(out.Sandboxes, s.toREST(sb))
	}
	return writeJSON(w, http.StatusOK, out)
}

func parseListFilter(r *http.Request, p Principal) (store.SandboxFilter, error) {
	q := r.URL.Query()
	f := store.SandboxFilter{Tenant: p.Tenant, PageToken: q.Get("page_token"), Limit: 100}
	for _, st := range q["state"] {
		f.States = append(f.States, strings.Split(st, ",")...)
	}
	for _, kv := range q["metadata"] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return f, errdefs.New(errdefs.InvalidArgument, "metadata filter %q is invalid: use key=value", kv)
		}
		if f.Metadata == nil {
			f.Metadata = map[string]string{}
		}
		f.Metadata[k] = v
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return f, errdefs.New(errdefs.InvalidArgument, "limit must be between 1 and 1000, got %q", l)
		}
		f.Limit = n
	}
	return f, nil
}

func (s *Server) deleteSandbox(w http.ResponseWriter, r *http.Request, p Principal) error {
	if err := s.DeleteSandbox(r.Context(), p, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) setTimeout(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req rest.SetTimeoutRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	sb, err := s.SetTimeout(r.Context(), p, r.PathValue("id"), req.Timeout)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.toREST(sb))
}

func (s *Server) suspendSandbox(w http.ResponseWriter, r *http.Request, p Principal) error {
	sb, err := s.SuspendSandbox(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.toREST(sb))
}

func (s *Server) resumeSandbox(w http.ResponseWriter, r *http.Request, p Principal) error {
	sb, err := s.ResumeSandbox(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.toREST(sb))
}

// toREST is the API view of a record, with the idle timer of a running
// sandbox as the server's activity tracker knows it.
func (s *Server) toREST(sb *store.Sandbox) rest.Sandbox {
	out := rest.Sandbox{
		ID: sb.ID, Name: sb.Name, Image: sb.Image, State: sb.State, Reason: sb.Reason,
		Runtime: sb.Runtime, Node: sb.Node, CPUs: sb.CPUs, MemoryMB: sb.MemoryMB, DiskMB: sb.DiskMB,
		Metadata: sb.Metadata, Timeout: sb.TimeoutSec, IdleTimeout: sb.IdleTimeoutSec, CreatedAt: sb.CreatedAt,
		StartedAt: timeOrNil(sb.StartedAt), ExpiresAt: timeOrNil(sb.ExpiresAt), SuspendedAt: timeOrNil(sb.SuspendedAt),
		FromSnapshot: sb.FromSnapshot, Network: networkREST(sb.Network), PublicPorts: slices.Clone(sb.PublicPorts),
	}
	if sb.TimeoutSec > 0 {
		out.TimeoutAction = actionOf(sb.TimeoutAction)
	}
	if sb.IdleTimeoutSec > 0 {
		out.IdleAction = actionOf(sb.IdleAction)
	}
	switch sb.State {
	case rest.StateRunning:
		if sb.IdleTimeoutSec > 0 {
			if last, active, ok := s.activity.peek(sb.ID); ok {
				if active {
					last = s.cfg.Now()
				}
				out.LastActiveAt = timeOrNil(last.UTC())
				out.IdleExpiresAt = timeOrNil(last.UTC().Add(time.Duration(sb.IdleTimeoutSec) * time.Second))
			}
		}
	case rest.StateSuspended, rest.StateResuming:
		if sb.TimeoutSec > 0 {
			out.TimeoutLeft = sb.TimeoutSec
			if sb.TimeoutLeftMs > 0 {
				out.TimeoutLeft = (sb.TimeoutLeftMs + 999) / 1000
			}
		}
		if sb.Snapshot != nil {
			out.SnapshotBytes = sb.Snapshot.Size
		}
	}
	return out
}

// actionOf is a stored action as the API shows it ("" is kill).
func actionOf(a string) string {
	if a == "" {
		return rest.ActionKill
	}
	return a
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
