package server

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/denhq/den/internal/errdefs"
)

// Routing of the guest protocol: a request to
// /v1/sandboxes/{id}/envd/{path} is authenticated with the den API key,
// checked against the sandbox's tenant and state (a suspended sandbox is
// resumed first, the request waiting for it), stripped of the API key
// and forwarded as /{path} to the sandbox's guest agent over the node's
// guest channel (for gVisor a host unix socket, never the sandbox network).
// Responses stream back unbuffered, so Connect server streams and /files
// downloads flow with bounded memory.

type dialGuestFunc func(ctx context.Context, id string) (net.Conn, error)

// guestProxies keeps one reverse proxy, with its own connection pool, per
// sandbox.
type guestProxies struct {
	dial dialGuestFunc
	// oneShot carries each request on a guest connection of its own
	// (oneShotTransport) instead of keeping connections.
	oneShot bool
	// lost says why a Connect stream of sandbox id broke (see
	// connectStreamGuard).
	lost func(ctx context.Context, id string) string
	mu   sync.Mutex
	byID map[string]*httputil.ReverseProxy
}

func newGuestProxies(dial dialGuestFunc, oneShot bool, lost func(ctx context.Context, id string) string) *guestProxies {
	return &guestProxies{dial: dial, oneShot: oneShot, lost: lost, byID: map[string]*httputil.ReverseProxy{}}
}

func (g *guestProxies) get(id string) *httputil.ReverseProxy {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p := g.byID[id]; p != nil {
		return p
	}
	var tr http.RoundTripper = &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return g.dial(ctx, id)
		},
		// Idle guest connections are cheap to redial (a unix socket, or
		// a stream on a node link) and expensive to keep for many
		// sandboxes at once (each holds goroutines here, on the node and
		// in the guest): a few per sandbox, for a few seconds.
		MaxIdleConnsPerHost: 4,
		MaxConnsPerHost:     512,
		IdleConnTimeout:     5 * time.Second,
		DisableCompression:  true,
		// The agent's own headers are a few hundred bytes; whatever
		// answers in its place is untrusted.
		MaxResponseHeaderBytes: maxSandboxResponseHeader,
	}
	if g.oneShot {
		tr = &oneShotTransport{dial: func(ctx context.Context) (net.Conn, error) { return g.dial(ctx, id) },
			maxHeader: maxSandboxResponseHeader}
	}
	p := &httputil.ReverseProxy{
		Transport:     tr,
		BufferPool:    ProxyBuffers,
		FlushInterval: -1,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.Host = "http", "guest", "guest"
			pr.Out.URL.RawPath = ""
			stripCredentials(pr.Out.Header)
		},
		ModifyResponse: func(resp *http.Response) error {
			if isConnectStream(resp.Header) {
				ctx := resp.Request.Context()
				resp.Body = &connectStreamGuard{body: resp.Body, lost: func() string {
					if ctx.Err() != nil {
						return "the request ended" // the client left: nobody reads this
					}
					return g.lost(ctx, id)
				}}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return
			}
			writeError(w, errdefs.Wrap(errdefs.Unavailable, err, "sandbox %s: guest agent unreachable", id))
		},
	}
	g.byID[id] = p
	return p
}

// ProxyBuffers are the copy buffers of den's reverse proxies, shared:
// without a pool a reverse proxy allocates 32 KiB for every request,
// which for a short command is most of what its exec allocates.
var ProxyBuffers httputil.BufferPool = &bufferPool{pool: sync.Pool{New: func() any { return new([32 << 10]byte) }}}

type bufferPool struct{ pool sync.Pool }

func (b *bufferPool) Get() []byte { return b.pool.Get().(*[32 << 10]byte)[:] }
func (b *bufferPool) Put(p []byte) {
	if cap(p) == 32<<10 {
		b.pool.Put((*[32 << 10]byte)(p[:32<<10]))
	}
}

// stripCredentials removes the den API key and the sandbox access token
// from a request to the guest agent, which runs inside the sandbox and
// needs neither. "Authorization: Basic" stays: it names the guest user to
// act as.
func stripCredentials(h http.Header) {
	h.Del("X-API-Key")
	h.Del("X-Access-Token")
	if strings.HasPrefix(h.Get("Authorization"), "Bearer ") {
		h.Del("Authorization")
	}
}

// forget drops the proxy of a sandbox and closes its idle connections.
func (g *guestProxies) forget(id string) {
	g.mu.Lock()
	p := g.byID[id]
	delete(g.byID, id)
	g.mu.Unlock()
	if p == nil {
		return
	}
	if tr, ok := p.Transport.(*http.Transport); ok {
		tr.CloseIdleConnections()
	}
}

// internalGuestPath is the guest agent route that only the node's runtime
// driver may call (POST /init applies a claimed warm sandbox's env,
// hostname and default user); proxies answer it as an unknown route.
const internalGuestPath = "/init"

// isInternalGuestPath reports whether the guest path p reaches an internal
// route, however it is spelled.
func isInternalGuestPath(p string) bool {
	c := path.Clean("/" + p)
	return c == internalGuestPath || strings.HasPrefix(c, internalGuestPath+"/")
}

func (s *Server) proxyGuest(w http.ResponseWriter, r *http.Request, p Principal) error {
	guestPath := "/" + r.PathValue("path")
	if isInternalGuestPath(guestPath) {
		return errdefs.New(errdefs.NotFound, "no route for %s %s", r.Method, r.URL.Path)
	}
	sb, _, err := s.EnsureRunning(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	out := r.Clone(r.Context())
	out.URL.Path, out.URL.RawPath = guestPath, ""
	s.GuestProxy(sb.ID).ServeHTTP(w, out)
	return nil
}
