package daemon

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"github.com/denhq/den/internal/errdefs"
)

// leaderProxy is a follower server's HTTP front: the leader runs the
// scheduler and holds the agents' links, so a follower passes every
// request to the same handler of the leader, streams and upgrades
// (WebSocket) included, over the cluster port (mutual TLS). Requests the
// follower answers itself (health, its own metrics) go to local.
type leaderProxy struct {
	// leader is the leader's cluster address; ok is false while there is
	// none. self is true when this server leads.
	leader func() (addr string, self, ok bool)
	// dial connects to a server's handler at its cluster address.
	dial  func(ctx context.Context, addr string) (net.Conn, error)
	local http.Handler
	// own are paths this server answers whatever its role.
	own map[string]bool

	mu      sync.Mutex
	proxies map[string]*httputil.ReverseProxy // by leader address
}

func (p *leaderProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	addr, self, ok := p.leader()
	if self || p.own[r.URL.Path] {
		p.local.ServeHTTP(w, r)
		return
	}
	if !ok {
		writeError(w, errdefs.New(errdefs.Unavailable, "this den server has no leader to pass the request to (an election is under way, or too few servers are up): retry shortly"))
		return
	}
	p.proxy(addr).ServeHTTP(w, r)
}

// proxy is the reverse proxy to the leader at addr, with its own
// connections (a new leader gets new ones).
func (p *leaderProxy) proxy(addr string) *httputil.ReverseProxy {
	p.mu.Lock()
	defer p.mu.Unlock()
	if rp, ok := p.proxies[addr]; ok {
		return rp
	}
	target := &url.URL{Scheme: "http", Host: "leader"}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // host routing (<port>-<id>.<domain>) must survive the hop
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return p.dial(ctx, addr) },
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		},
		FlushInterval: -1, // exec output and event streams as they come
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeError(w, errdefs.Wrap(errdefs.Unavailable, err, "pass the request to the leader at %s", addr))
		},
	}
	if p.proxies == nil {
		p.proxies = map[string]*httputil.ReverseProxy{}
	}
	p.proxies[addr] = rp
	return rp
}

// writeError answers err as the API does: its status and {"code","message"}.
func writeError(w http.ResponseWriter, err error) {
	k := errdefs.KindOf(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(k.HTTPStatus())
	json.NewEncoder(w).Encode(map[string]string{"code": k.Code(), "message": err.Error()})
}
