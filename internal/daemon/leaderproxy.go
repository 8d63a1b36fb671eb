package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/server"
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

// leaderHost is the URL host of a request proxied while no leader is
// known: its dial waits for one.
const leaderHost = "leader"

func (p *leaderProxy) init() {
	tr := &http.Transport{
		// Connections to the leader are kept and reused, pooled by its
		// cluster address (the URL host), so a new leader gets new ones.
		// A kept connection to a leader that died can fail the next
		// request's first write: nothing reached the leader, and the
		// transport sends the request again on a new connection (whose
		// dial waits for the next leader) when its body can be sent
		// again (replayable). A request that broke after it was sent
		// fails (503) and is not retried blind; one to a server that no
		// longer leads is refused by it (onlyWhileLeading), also 503.
		DialContext: func(ctx context.Context, _, hostport string) (net.Conn, error) {
			if addr, _, err := net.SplitHostPort(hostport); err == nil && addr != leaderHost {
				if c, err := p.dial(ctx, hostport); err == nil {
					return c, nil
				}
			}
			return p.dialLeader(ctx) // no leader known, or it did not answer: wait for one
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}
	p.rp = &httputil.ReverseProxy{
		BufferPool: server.ProxyBuffers,
		Rewrite: func(pr *httputil.ProxyRequest) {
			host := leaderHost
			if addr, _, ok := p.leader(); ok {
				host = addr
			} else {
				pr.Out.Close = true // whoever answers the dial, do not pool it under "leader"
			}
			pr.SetURL(&url.URL{Scheme: "http", Host: host})
			pr.Out.Host = pr.In.Host // host routing (<port>-<id>.<domain>) must survive the hop
			pr.SetXForwarded()
			replayable(pr.Out)
		},
		Transport:     tr,
		FlushInterval: -1, // exec output and event streams as they come
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeError(w, errdefs.Wrap(errdefs.Unavailable, err, "pass the request to the leader"))
		},
	}
}

// maxReplayBody is the largest request body a follower keeps in memory so
// that the transport can send the request again (API requests are small
// JSON; uploads and streams are not kept, and not retried).
const maxReplayBody = 1 << 20

// replayable reads a small body of known length into memory and gives
// the request a GetBody, so that http.Transport may send it again when it
// failed before any byte of it was written (a kept connection that died).
func replayable(r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody || r.GetBody != nil || r.ContentLength <= 0 || r.ContentLength > maxReplayBody {
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, r.ContentLength))
	r.Body.Close()
	if err != nil {
		r.Body = io.NopCloser(&errReader{err})
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(data))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
}

// errReader fails every read with err.
type errReader struct{ err error }

func (e *errReader) Read([]byte) (int, error) { return 0, e.err }

// onlyWhileLeading is the handler of API requests other servers pass on:
// next while this server leads, else 503 (a follower's kept connection
// may still reach a server that lost an election; it must not run the
// request without the agents, which only the leader holds).
func onlyWhileLeading(next http.Handler, leading func() bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !leading() {
			writeError(w, errdefs.New(errdefs.Unavailable, "this den server no longer leads the cluster: retry the request"))
			return
		}
		next.ServeHTTP(w, r)
	})
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

// setUserTimeout makes the kernel fail a TCP connection whose sent data
// stays unacknowledged for d (TCP_USER_TIMEOUT); other connections are
// left alone.
func setUserTimeout(c net.Conn, d time.Duration) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	})
}

// writeError answers err as the API does: its status and {"code","message"}.
func writeError(w http.ResponseWriter, err error) {
	k := errdefs.KindOf(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(k.HTTPStatus())
	json.NewEncoder(w).Encode(map[string]string{"code": k.Code(), "message": err.Error()})
}
