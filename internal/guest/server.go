package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// Server serves a handler on a set of listen addresses ("unix:PATH" or
// "tcp:HOST:PORT") over HTTP/1.1 and h2c, and can close every listener and
// connection and listen again: gVisor cannot checkpoint a sandbox that
// holds a host socket (the agent's unix socket on a --host-uds=create
// mount, and every connection accepted on it), so the agent lets go of
// them for a checkpoint (Suspend) and listens again after a restore
// (Resume). Its methods are safe for concurrent use.
type Server struct {
	h     http.Handler
	addrs []string
	log   *slog.Logger
	// errc receives the first unexpected end of a Serve (a listener that
	// failed on its own); it has room for one error per address.
	errc chan error

	mu  sync.Mutex
	cur *serving // nil while suspended or stopped
}

// serving is one period between Listen (or Resume) and Suspend (or Stop):
// a fresh http.Server, since a closed one cannot serve again.
type serving struct {
	srv     *http.Server
	lns     []*trackingListener
	wg      sync.WaitGroup // the Serve goroutines
	closing bool           // set before the listeners are closed on purpose
}

// NewServer returns a Server for h on addrs; it listens on Listen.
func NewServer(h http.Handler, addrs []string, log *slog.Logger) (*Server, error) {
	if len(addrs) == 0 {
		return nil, errors.New("at least one listen address is required")
	}
	for _, a := range addrs {
		if _, _, err := SplitListenAddr(a); err != nil {
			return nil, err
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{h: h, addrs: addrs, log: log, errc: make(chan error, len(addrs))}, nil
}

// Errors receives an error when a listener fails on its own (not because
// of Suspend or Stop); the agent then shuts down.
func (s *Server) Errors() <-chan error { return s.errc }

// Listen opens every listener and serves on them. It is Resume under
// another name: a no-op while serving.
func (s *Server) Listen() error { return s.Resume() }

// Resume listens on every address again after Suspend (removing a stale
// unix socket first: after a restore the host still has the old one). It
// is a no-op while serving. On error nothing is listening.
func (s *Server) Resume() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		return nil
	}
	sv := &serving{srv: newHTTPServer(s.h)}
	for _, a := range s.addrs {
		ln, err := listen(a)
		if err != nil {
			for _, l := range sv.lns {
				_ = l.Close()
			}
			return err
		}
		sv.lns = append(sv.lns, &trackingListener{Listener: ln, conns: map[*trackedConn]struct{}{}})
		s.log.Info("listening", "addr", a)
	}
	for _, ln := range sv.lns {
		sv.wg.Add(1)
		go func() {
			defer sv.wg.Done()
			err := sv.srv.Serve(ln)
			s.mu.Lock()
			unexpected := !sv.closing
			s.mu.Unlock()
			if unexpected {
				s.errc <- err
			}
		}()
	}
	s.cur = sv
	return nil
}

// Suspend closes every listener and every connection accepted on them,
// and returns once their file descriptors are closed (the Serve
// goroutines have returned, and net.Conn.Close of a socket returns after
// close(2)). Requests in flight fail; the processes they started go on.
// It is a no-op while suspended.
func (s *Server) Suspend() {
	s.mu.Lock()
	sv := s.cur
	s.cur = nil
	if sv != nil {
		sv.closing = true
	}
	s.mu.Unlock()
	if sv == nil {
		return
	}
	for _, ln := range sv.lns {
		_ = ln.Close()
	}
	// No Serve accepts any more: every connection is tracked by now.
	sv.wg.Wait()
	_ = sv.srv.Close()
	for _, ln := range sv.lns {
		ln.closeConns()
	}
	s.log.Info("listeners closed for a checkpoint")
}

// Stop shuts the server down for good, letting requests in flight finish
// for up to timeout.
func (s *Server) Stop(timeout time.Duration) {
	s.mu.Lock()
	sv := s.cur
	s.cur = nil
	if sv != nil {
		sv.closing = true
	}
	s.mu.Unlock()
	if sv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := sv.srv.Shutdown(ctx); err != nil {
		_ = sv.srv.Close()
	}
	sv.wg.Wait()
}

// newHTTPServer serves h over HTTP/1.1 and unencrypted HTTP/2 (h2c).
func newHTTPServer(h http.Handler) *http.Server {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Server{Handler: h, Protocols: p, ReadHeaderTimeout: 30 * time.Second}
}

// listen opens a listener for "unix:PATH" or "tcp:ADDR", removing a stale
// unix socket first.
func listen(l string) (net.Listener, error) {
	network, addr, err := SplitListenAddr(l)
	if err != nil {
		return nil, err
	}
	if network == "vport" {
		return listenVport(addr)
	}
	if network == "unix" {
		if err := os.Remove(addr); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale socket %s: %w", addr, err)
		}
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", l, err)
	}
	return ln, nil
}

// SplitListenAddr splits "unix:PATH", "tcp:HOST:PORT" or "vport:NAME" (a
// microVM's virtio-serial port, see vport.go) into a network and an
// address.
func SplitListenAddr(l string) (network, addr string, err error) {
	network, addr, ok := strings.Cut(l, ":")
	if !ok || addr == "" || (network != "unix" && network != "tcp" && network != "vport") {
		return "", "", fmt.Errorf("listen address %q: want unix:PATH, tcp:HOST:PORT or vport:NAME", l)
	}
	return network, addr, nil
}

// trackingListener remembers the connections it accepted until they are
// closed, so Suspend can close them all, hijacked ones included.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	return tc, nil
}

// closeConns closes every connection still open.
func (l *trackingListener) closeConns() {
	l.mu.Lock()
	conns := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
	err  error
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.err = c.Conn.Close()
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.err
}

// ReadFrom keeps the zero-copy path (sendfile, splice) of the connection
// under the wrapper for file downloads.
func (c *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}
