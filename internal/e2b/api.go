// Package e2b speaks E2B's wire protocol on top of den: the control-plane
// REST API that the unmodified e2b SDKs call (NewAPI, E2B_API_URL) and the
// sandbox traffic plane that carries envd requests to a sandbox's guest
// agent (NewSandboxTraffic, E2B_SANDBOX_URL). It holds no logic of its own:
// every operation is a call into den's service layer (internal/server),
// translated to and from E2B's field names, statuses and error bodies. The
// exception is E2B's template builds (Templates): the facade keeps their
// records and uploaded files itself and builds them through a
// TemplateBuilder.
package e2b

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/server"
	"github.com/denhq/den/internal/store"
)

// EnvdVersion is the envd version den's guest agent claims. The SDKs gate
// features by it; 0.6.4 turns on every feature the guest implements
// (recursive watch, stdin, default user, close stdin, octet-stream upload,
// file metadata, watch entry info, network mounts in watch).
const EnvdVersion = "0.6.4"

// EnvdPort is the port E2B's SDKs address envd at.
const EnvdPort = "49983"

// Service is what the facade needs of den: *server.Server implements it.
type Service interface {
	Authenticate(r *http.Request) (server.Principal, error)
	CreateSandbox(ctx context.Context, p server.Principal, req rest.CreateSandboxRequest) (*store.Sandbox, error)
	Lookup(p server.Principal, idOrName string) (*store.Sandbox, error)
	Inspect(p server.Principal, idOrName string) (*store.Sandbox, error)
	ListSandboxes(p server.Principal, f store.SandboxFilter) ([]*store.Sandbox, string, error)
	DeleteSandbox(ctx context.Context, p server.Principal, idOrName string) error
	SetTimeout(ctx context.Context, p server.Principal, idOrName string, seconds int64) (*store.Sandbox, error)
	SuspendSandbox(ctx context.Context, p server.Principal, idOrName string) (*store.Sandbox, error)
	EnsureRunning(ctx context.Context, p server.Principal, idOrName string) (*store.Sandbox, bool, error)
	Stats(ctx context.Context, p server.Principal, idOrName string) (driver.Stats, error)
	ImageHasUser(image, user string) bool
}

// Config wires the control-plane facade.
type Config struct {
	Service Service
	// Domain is returned as the sandboxes' domain: the SDKs reach envd at
	// <port>-<sandboxID>.<Domain> unless E2B_SANDBOX_URL is set.
	Domain string
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Templates stores the tenants' templates and builds them (E2B's
	// template API, Template.build); nil answers those routes with 501 and
	// makes templateIDs plain den image names.
	Templates *Templates
}

// api is the control-plane facade.
type api struct {
	cfg Config
	mux *http.ServeMux
}

// NewAPI returns the E2B control-plane API as a handler, to be mounted at
// the root of a listener (E2B_API_URL).
func NewAPI(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &api{cfg: cfg, mux: http.NewServeMux()}
	a.routes()
	return a.mux
}

// Routes lists the facade's routes, for a parent mux that mounts them.
var Routes = slices.Concat([]string{
	"POST /sandboxes", "POST /v2/sandboxes", "GET /sandboxes", "GET /v2/sandboxes",
	"GET /sandboxes/metrics", "GET /sandboxes/{id}", "DELETE /sandboxes/{id}",
	"POST /sandboxes/{id}/connect", "POST /v2/sandboxes/{id}/connect",
	"POST /sandboxes/{id}/timeout", "POST /sandboxes/{id}/refreshes",
	"POST /sandboxes/{id}/pause", "POST /sandboxes/{id}/resume",
	"GET /sandboxes/{id}/metrics",
}, templateRoutes)

func (a *api) routes() {
	a.handle("POST /sandboxes", a.create)
	a.handle("POST /v2/sandboxes", a.create)
	a.handle("GET /sandboxes", a.listV1)
	a.handle("GET /v2/sandboxes", a.listV2)
	a.handle("GET /sandboxes/metrics", a.metricsMany)
	a.handle("GET /sandboxes/{id}", a.get)
	a.handle("DELETE /sandboxes/{id}", a.kill)
	a.handle("POST /sandboxes/{id}/connect", a.connect)
	a.handle("POST /v2/sandboxes/{id}/connect", a.connect)
	a.handle("POST /sandboxes/{id}/timeout", a.setTimeout)
	a.handle("POST /sandboxes/{id}/refreshes", a.refresh)
	a.handle("POST /sandboxes/{id}/pause", a.pause)
	a.handle("POST /sandboxes/{id}/resume", a.resume)
	a.handle("GET /sandboxes/{id}/metrics", a.metrics)
	a.templateRoutes()
}

// handlerFunc is an authenticated facade handler; a returned error is
// written in E2B's shape.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p server.Principal) error

func (a *api) handle(pattern string, h handlerFunc) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p, err := a.cfg.Service.Authenticate(r)
		if err == nil {
			err = h(w, r, p)
		}
		if err != nil {
			if k := errdefs.KindOf(err); k == errdefs.Internal || k == errdefs.Unavailable {
				a.cfg.Logger.Error("e2b request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			writeError(w, err)
		}
	})
}

// apiError is E2B's Error schema: the HTTP status as an integer code.
type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// writeError writes err as E2B does: {"code": <status>, "message": ...}.
func writeError(w http.ResponseWriter, err error) {
	status := errdefs.KindOf(err).HTTPStatus()
	if s := errdefs.RetryAfter(err); s > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(s))
	}
	writeJSON(w, status, apiError{Code: status, Message: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// maxBody bounds JSON request bodies.
const maxBody = 1 << 20

// decodeJSON reads a JSON body into v. Unknown fields are ignored, as the
// SDKs send fields (mcp, network, volumeMounts...) den does not model; an
// empty body leaves v as is when optional.
func decodeJSON(r *http.Request, v any, optional bool) error {
	err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBody)).Decode(v)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF) && optional:
		return nil
	case errors.Is(err, io.EOF):
		return errdefs.New(errdefs.InvalidArgument, "request body is empty: send a JSON object")
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return errdefs.New(errdefs.InvalidArgument, "request body is larger than %d bytes", maxBody)
	}
	return errdefs.Wrap(errdefs.InvalidArgument, err, "invalid JSON body")
}
