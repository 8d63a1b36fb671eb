package daemon

import (
	"encoding/json"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"

	"github.com/denhq/den/internal/errdefs"
)

// leaderProxy is a follower server's HTTP front: the leader runs the
// scheduler and holds the agents' links, so a follower passes every
// request to the same listener of the leader, streams and upgrades
// (WebSocket) included. Requests the follower answers itself (health,
// its own metrics) go to local.
type leaderProxy struct {
	// leader is the leader's base URL for this listener; ok is false
	// while there is none. self is true when this server leads.
	leader func() (base string, self, ok bool)
	local  http.Handler
	// own are paths this server answers whatever its role.
	own map[string]bool

	mu      sync.Mutex
	proxies map[string]*httputil.ReverseProxy // by leader base URL
}

func (p *leaderProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	base, self, ok := p.leader()
	if self || p.own[r.URL.Path] {
		p.local.ServeHTTP(w, r)
		return
	}
	if !ok {
		writeError(w, errdefs.New(errdefs.Unavailable, "this den server has no leader to pass the request to (an election is under way, or too few servers are up): retry shortly"))
		return
	}
	rp, err := p.proxy(base)
	if err != nil {
		writeError(w, errdefs.Wrap(errdefs.Internal, err, "leader address %q", base))
		return
	}
	rp.ServeHTTP(w, r)
}

func (p *leaderProxy) proxy(base string) (*httputil.ReverseProxy, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if rp, ok := p.proxies[base]; ok {
		return rp, nil
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host // host routing (<port>-<id>.<domain>) must survive the hop
			pr.SetXForwarded()
		},
		FlushInterval: -1, // exec output and event streams as they come
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeError(w, errdefs.Wrap(errdefs.Unavailable, err, "pass the request to the leader at %s", base))
		},
	}
	if p.proxies == nil {
		p.proxies = map[string]*httputil.ReverseProxy{}
	}
	p.proxies[base] = rp
	return rp, nil
}

// writeError answers err as the API does: its status and {"code","message"}.
func writeError(w http.ResponseWriter, err error) {
	k := errdefs.KindOf(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(k.HTTPStatus())
	json.NewEncoder(w).Encode(map[string]string{"code": k.Code(), "message": err.Error()})
}
