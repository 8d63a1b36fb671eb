package daemon

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// httpLimits bound what one client can hold of den's HTTP listeners (the
// API and the sandbox traffic listener) before its request has begun.
// There is deliberately no ReadTimeout or WriteTimeout: exec output,
// file transfers, WebSockets and server-sent events through a sandbox's
// port stream for as long as they need, and their handlers bound them.
type httpLimits struct {
	// ReadHeader is how long a connection may take to send a request's
	// headers; a slowloris client is cut after it.
	ReadHeader time.Duration
	// Idle is how long a keep-alive connection may wait for its next
	// request.
	Idle time.Duration
	// MaxHeaderBytes bounds the request line and headers; more is a 431.
	MaxHeaderBytes int
}

// defaultHTTPLimits are the limits of den up's listeners.
var defaultHTTPLimits = httpLimits{ReadHeader: 10 * time.Second, Idle: 30 * time.Second, MaxHeaderBytes: 1 << 20}

// httpServer is an http.Server whose Shutdown does not wait for
// connections that never sent a request. net/http counts such a
// connection as active until it is 5 s old, so one that a client opened
// and did not use (Go's HTTP client can leave one behind when a request
// took another connection first) held den's shutdown for 5 s.
type httpServer struct {
	*http.Server
	mu    sync.Mutex
	fresh map[net.Conn]struct{} // connections in http.StateNew
}

// newHTTPServer returns a server of h with the limits l. It speaks
// HTTP/1.1 and cleartext HTTP/2 with prior knowledge (h2c: gRPC clients,
// `curl --http2-prior-knowledge`); TLS, where wanted, is a front proxy's.
func newHTTPServer(h http.Handler, l httpLimits) *httpServer {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	s := &httpServer{fresh: map[net.Conn]struct{}{}}
	s.Server = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeader,
		IdleTimeout:       l.Idle,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		Protocols:         p,
		ConnState:         s.track,
	}
	return s
}

// track keeps the set of connections that have not begun a request.
func (s *httpServer) track(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st == http.StateNew {
		s.fresh[c] = struct{}{}
	} else {
		delete(s.fresh, c)
	}
}

// freshPoll is how often Shutdown closes connections that have not begun
// a request, until the server's other connections have ended.
const freshPoll = 20 * time.Millisecond

// Shutdown is http.Server.Shutdown that also closes the connections that
// have not begun a request: their clients get the close a new connection
// to a stopped server gets. Requests in flight finish, as with
// http.Server.Shutdown.
func (s *httpServer) Shutdown(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.Server.Shutdown(ctx) }()
	tick := time.NewTicker(freshPoll)
	defer tick.Stop()
	for {
		s.closeFresh()
		select {
		case err := <-done:
			return err
		case <-tick.C:
		}
	}
}

func (s *httpServer) closeFresh() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.fresh {
		c.Close()
		delete(s.fresh, c)
	}
}
