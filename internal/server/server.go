// Package server is den's control-plane HTTP API: authentication, request
// validation, the /v1 REST routes, and the proxy that carries the guest
// protocol to a sandbox's agent. It keeps no state of its own: desired state
// lives in the replicated store, and sandboxes run on a node.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/node"
	"github.com/denhq/den/internal/store"
)

// Node is what the server needs of the data plane.
type Node interface {
	ID() string
	// Runtimes describes the node's runtimes, the default first; Runtime
	// one of them by name ("" the default), InvalidArgument for another.
	Runtimes() []node.RuntimeInfo
	Runtime(name string) (node.RuntimeInfo, error)
	// Resources are the host's CPUs and memory.
	Resources() node.Resources
	// SetNetwork replaces a sandbox's egress policy, in its record and
	// on its network, and returns the record.
	SetNetwork(ctx context.Context, id string, pol store.NetworkPolicy) (*store.Sandbox, error)
	Start(ctx context.Context, id string) (*store.Sandbox, error)
	Destroy(ctx context.Context, id string) error
	// Suspend saves a running sandbox's state and stops it; Resume brings
	// a suspended one back. Both return the final record; see
	// internal/node for their guarantees.
	Suspend(ctx context.Context, id string) (*store.Sandbox, error)
	Resume(ctx context.Context, id string) (*store.Sandbox, error)
	// CreateSnapshot saves a running sandbox as a snapshot object, which
	// the sandbox goes on running; DeleteSnapshot removes one;
	// StartClones starts recorded sandboxes as clones of one.
	CreateSnapshot(ctx context.Context, rec *store.SandboxSnapshot) (*store.SandboxSnapshot, error)
	DeleteSnapshot(ctx context.Context, id string) error
	StartClones(ctx context.Context, snapID string, ids []string) ([]*store.Sandbox, error)
	DialGuest(ctx context.Context, id string) (net.Conn, error)
	// Stats reads a running sandbox's resource usage; Unsupported when the
	// runtime cannot.
	Stats(ctx context.Context, id string) (driver.Stats, error)
	// PoolStatus reports the warm pools the node keeps, by pool ID;
	// PoolMemoryBudgetMB is the memory their spares may hold in total.
	PoolStatus() map[string]node.PoolState
	PoolMemoryBudgetMB() (int64, error)
}

// Claimer is a Node that keeps warm spares: StartClaimed starts new
// sandbox sb from one when its runtime has one ready, and records it with
// record once it runs (one store write); nil and no error when there is
// none, and the caller records sb and calls Start. See node.StartClaimed.
type Claimer interface {
	StartClaimed(ctx context.Context, sb *store.Sandbox, record func(*store.Sandbox) error) (*store.Sandbox, error)
}

// Placer is a Node that is many nodes (a cluster's data plane): Place
// chooses the node of new sandbox sb before its record is written and sets
// sb.Node; undo gives the capacity back when the record is not written.
// When no node has room Place waits up to wait for some to free (0: it
// answers ResourceExhausted at once).
type Placer interface {
	Place(ctx context.Context, sb *store.Sandbox, wait time.Duration) (undo func(), err error)
}

// PoolState is what a node reports of one warm pool.
type PoolState = node.PoolState

// Config wires a Server.
type Config struct {
	Store  *store.Store
	Node   Node
	Images *image.Store
	// Builder builds images for POST /v1/images/build; nil answers that
	// route 501 unsupported.
	Builder Builder
	// MaxBuildContext bounds the unpacked size of a build context in
	// bytes (tar headers count 512 bytes each); 0 means 2 GiB.
	MaxBuildContext int64
	// MaxPortConns bounds each sandbox's open port tunnels (ports as
	// URLs); more requests wait. 0 means DefaultMaxPortConns.
	MaxPortConns int
	Version      string
	// Cluster is the node gateway of den server; nil in den up. With it,
	// /v1/nodes lists the cluster's node records and /v1/tokens makes
	// join tokens.
	Cluster Cluster
	// Leading reports whether this server applies the sandboxes' timers
	// (the reaper): in den server only the leader does, which holds the
	// nodes and sees the requests. nil means always (den up).
	Leading func() bool
	Logger  *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server serves the den API.
type Server struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	proxies *guestProxies
	metrics *metrics
	// activity is the in-memory use of each sandbox (idle timeouts).
	activity *activity
	// swept is when the reaper last swept the activity tracker (reap only).
	swept time.Time
	wakes wakeCalls
	// quotas and rates enforce each tenant's limits (quota.go).
	quotas quotas
	rates  rateLimits
	// ports bounds each sandbox's port tunnels (port_slots.go).
	ports portSlots
	// routes are the patterns of the /v1 API, in registration order
	// (the OpenAPI spec is checked against them).
	apiRoutes []string
}

// New builds a Server. Call Run to start its background loops.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Node == nil || cfg.Images == nil {
		return nil, errdefs.New(errdefs.InvalidArgument, "server config: Store, Node and Images are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxPortConns <= 0 {
		cfg.MaxPortConns = DefaultMaxPortConns
	}
	if cfg.MaxBuildContext == 0 {
		cfg.MaxBuildContext = defaultMaxBuildContext
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), metrics: newMetrics(),
		activity: newActivity(), wakes: wakeCalls{m: map[string]*wakeCall{}}}
	s.ports.size = cfg.MaxPortConns
	// A cluster's guest connections are node link streams, cheap to open
	// for each request (oneShotTransport).
	_, cluster := cfg.Node.(Placer)
	s.proxies = newGuestProxies(cfg.Node.DialGuest, cluster, s.lostSandboxReason)
	s.routes()
	return s, nil
}

// Handler is the root HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Mount serves h for each pattern on the server's listener, next to the
// /v1 routes (another API facade, e.g. internal/e2b). Patterns must not
// collide with den's own.
func (s *Server) Mount(patterns []string, h http.Handler) {
	for _, p := range patterns {
		s.mux.Handle(p, h)
	}
}

func (s *Server) routes() {
	s.mux.Handle("GET /metrics", s.metrics.handler())
	s.mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	s.handle("GET /v1/info", s.info)
	s.handle("GET /v1/nodes", s.listNodes)
	s.handle("GET /v1/nodes/{id}", s.getNode)
	s.handle("POST /v1/nodes/{id}/drain", s.drainNode)
	s.handle("POST /v1/nodes/{id}/undrain", s.undrainNode)
	s.handle("POST /v1/tokens", s.createJoinToken)
	s.handle("GET /v1/tokens", s.listJoinTokens)
	s.handle("DELETE /v1/tokens/{id}", s.deleteJoinToken)
	s.handle("GET /v1/cluster/members", s.listClusterMembers)
	s.handle("GET /v1/cluster/ca", s.getClusterCA)
	s.handle("POST /v1/cluster/ca/rotate", s.rotateClusterCA)
	s.handle("POST /v1/sandboxes", s.createSandbox)
	s.handle("GET /v1/sandboxes", s.listSandboxes)
	s.handle("GET /v1/sandboxes/{id}", s.getSandbox)
	s.handle("DELETE /v1/sandboxes/{id}", s.deleteSandbox)
	s.handle("POST /v1/sandboxes/{id}/timeout", s.setTimeout)
	s.handle("POST /v1/sandboxes/{id}/suspend", s.suspendSandbox)
	s.handle("POST /v1/sandboxes/{id}/resume", s.resumeSandbox)
	s.handle("POST /v1/sandboxes/{id}/fork", s.forkSandbox)
	s.handle("GET /v1/sandboxes/{id}/network", s.getNetwork)
	s.handle("PUT /v1/sandboxes/{id}/network", s.putNetwork)
	s.handle("PUT /v1/sandboxes/{id}/ports/{port}", s.putPort)
	s.handle("/v1/sandboxes/{id}/envd/{path...}", s.proxyGuest)
	s.handle("POST /v1/snapshots", s.createSnapshot)
	s.handle("GET /v1/snapshots", s.listSnapshots)
	s.handle("GET /v1/snapshots/usage", s.snapshotUsage)
	s.handle("POST /v1/snapshots/prune", s.pruneSnapshots)
	s.handle("GET /v1/snapshots/{id}", s.getSnapshot)
	s.handle("DELETE /v1/snapshots/{id}", s.deleteSnapshot)
	s.handle("POST /v1/pools", s.createPool)
	s.handle("GET /v1/pools", s.listPools)
	s.handle("GET /v1/pools/{id}", s.getPool)
	s.handle("PATCH /v1/pools/{id}", s.updatePool)
	s.handle("DELETE /v1/pools/{id}", s.deletePool)
	s.handle("POST /v1/ssh-keys", s.addSSHKey)
	s.handle("GET /v1/ssh-keys", s.listSSHKeys)
	s.handle("DELETE /v1/ssh-keys/{id}", s.deleteSSHKey)
	s.handle("POST /v1/tenants", s.createTenant)
	s.handle("GET /v1/tenants", s.listTenants)
	s.handle("GET /v1/tenants/{name}", s.getTenant)
	s.handle("PATCH /v1/tenants/{name}", s.updateTenant)
	s.handle("DELETE /v1/tenants/{name}", s.deleteTenant)
	s.handle("POST /v1/keys", s.createAPIKey)
	s.handle("GET /v1/keys", s.listAPIKeys)
	s.handle("DELETE /v1/keys/{id}", s.revokeAPIKey)
	s.handle("GET /v1/images", s.listImages)
	s.handle("POST /v1/images", s.importImage)
	s.handle("GET /v1/images/{ref}", s.getImage)
	s.handle("DELETE /v1/images/{ref}", s.removeImage)
	s.handle("POST /v1/images/{ref}/tag", s.tagImage)
	s.handle("GET /v1/images/{ref}/export", s.exportImage)
	s.handle("POST /v1/images/pull", s.pullImage)
	s.handle("POST /v1/images/push", s.pushImage)
	s.handle("POST /v1/images/build", s.buildImage)
	s.handle("POST /v1/images/prune", s.pruneImages)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errdefs.New(errdefs.NotFound, "no route for %s %s", r.Method, r.URL.Path))
	})
}

// apiHandler is an authenticated handler; a returned error is written as
// {"code","message"} with the status of its kind.
type apiHandler func(w http.ResponseWriter, r *http.Request, p Principal) error

func (s *Server) handle(pattern string, h apiHandler) {
	s.apiRoutes = append(s.apiRoutes, pattern)
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p, err := s.Authenticate(r)
		if err == nil {
			err = s.catchUpBeforeWrite(r)
		}
		if err == nil {
			err = h(w, r, p)
		}
		if readOnly(r) && errdefs.IsNotFound(err) && s.caughtUp(r.Context()) {
			// On a cluster follower the object may have been made
			// through another server a moment ago: read again once
			// this server has caught up. den up and the leader are
			// never behind and never read twice.
			err = h(w, r, p)
		}
		if err != nil {
			s.logError(r, err)
			writeError(w, err)
		}
	})
}

// readOnly reports whether r only reads (it may run twice).
func readOnly(r *http.Request) bool { return r.Method == http.MethodGet || r.Method == http.MethodHead }

// catchUpBeforeWrite makes a request that changes state, on a cluster
// follower, see every write acknowledged anywhere before it (a key made
// for a tenant made through another server a moment ago). Its own writes
// go to the leader anyway; this adds a round trip there. den up and the
// leader do nothing.
func (s *Server) catchUpBeforeWrite(r *http.Request) error {
	if readOnly(r) {
		return nil
	}
	_, err := s.cfg.Store.CatchUp(r.Context())
	return err
}

func (s *Server) logError(r *http.Request, err error) {
	k := errdefs.KindOf(err)
	if k == errdefs.Internal || k == errdefs.Unavailable {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
}

// writeError writes err as an API error. Internal errors keep their message:
// den is self-hosted and the operator is the user.
func writeError(w http.ResponseWriter, err error) {
	k := errdefs.KindOf(err)
	if s := errdefs.RetryAfter(err); s > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(s))
	}
	writeJSON(w, k.HTTPStatus(), rest.Error{Code: k.Code(), Message: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// maxJSONBody bounds JSON request bodies.
const maxJSONBody = 1 << 20

// decodeJSON reads a JSON body of at most 1 MiB into v, rejecting unknown fields.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errdefs.New(errdefs.InvalidArgument, "request body is larger than %d bytes", maxJSONBody)
		}
		if errors.Is(err, io.EOF) {
			return errdefs.New(errdefs.InvalidArgument, "request body is empty: send a JSON object")
		}
		return errdefs.Wrap(errdefs.InvalidArgument, err, "invalid JSON body")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errdefs.New(errdefs.InvalidArgument, "invalid JSON body: data after the JSON object")
	}
	return nil
}

func (s *Server) info(w http.ResponseWriter, _ *http.Request, _ Principal) error {
	return writeJSON(w, http.StatusOK, rest.Info{
		Version:        s.cfg.Version,
		Runtimes:       runtimeNames(s.cfg.Node.Runtimes()),
		RuntimeDetails: runtimeDetails(s.cfg.Node.Runtimes()),
		Node:           s.cfg.Node.ID(),
	})
}
