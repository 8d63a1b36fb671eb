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

	// wait bounds how long a request waits for a leader; 0 means
	// leaderWait.
	wait time.Duration

	once sync.Once
	rp   *httputil.ReverseProxy
}

// leaderWait bounds how long a request waits for a leader to dial (an
// election after the old one died), as forwarded writes do.
const leaderWait = 10 * time.Second

func (p *leaderProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, self, _ := p.leader(); self || p.own[r.URL.Path] {
		p.local.ServeHTTP(w, r)
		return
	}
	p.once.Do(p.init)
	p.rp.ServeHTTP(w, r) // its dial waits for a leader (dialLeader)
}

func errNoLeader() error {
	return errdefs.New(errdefs.Unavailable, "this den server has no leader to pass the request to (an election is under way, or too few servers are up): retry shortly")
}

func (p *leaderProxy) init() {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return p.dialLeader(ctx) },
		// A connection per request: a kept one to a leader that died
		// fails the next request after it is written (a create must not
		// be retried blind), where a fresh dial fails before and waits
		// for the new leader.
		DisableKeepAlives: true,
	}
	target := &url.URL{Scheme: "http", Host: "leader"}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // host routing (<port>-<id>.<domain>) must survive the hop
			pr.SetXForwarded()
		},
		Transport:     tr,
		FlushInterval: -1, // exec output and event streams as they come
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeError(w, errdefs.Wrap(errdefs.Unavailable, err, "pass the request to the leader"))
		},
	}
}

// dialLeader connects to the current leader, waiting up to leaderWait
// for one that answers (a leader that just died is still named until
// the election).
func (p *leaderProxy) dialLeader(ctx context.Context) (net.Conn, error) {
	wait := p.wait
	if wait == 0 {
		wait = leaderWait
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	lastErr := errNoLeader()
	for {
		if addr, _, ok := p.leader(); ok {
			c, err := p.dial(ctx, addr)
			if err == nil {
				return c, nil
			}
			lastErr = err
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return nil, lastErr
		}
	}
}

// writeError answers err as the API does: its status and {"code","message"}.
func writeError(w http.ResponseWriter, err error) {
	k := errdefs.KindOf(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(k.HTTPStatus())
	json.NewEncoder(w).Encode(map[string]string{"code": k.Code(), "message": err.Error()})
}
