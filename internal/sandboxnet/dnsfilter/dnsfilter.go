// Package dnsfilter is the DNS resolver a sandbox talks to. It enforces the
// sandbox's egress policy on names: a name the policy refuses gets NXDOMAIN
// and never leaves the host, an allowed name is forwarded to upstream servers,
// and the addresses in the answer are reported before the sandbox sees them,
// so that the firewall can let the sandbox reach exactly the addresses it
// learned through this resolver for allowed names.
//
// Everything a sandbox sends is untrusted. Queries are size-capped, parsed
// defensively, rebuilt before they go upstream (so nothing but the question
// and the DNSSEC bits of a sandbox's query reaches an upstream), and the
// number of queries being forwarded at once is bounded.
package dnsfilter

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/denhq/den/internal/errdefs"
)

// Client is what the server knows of the sandbox a query came from.
type Client struct {
	// Allowed reports whether the sandbox may resolve name (lower case, no trailing dot).
	// It is called from the goroutine reading queries, so it must be fast.
	Allowed func(name string) bool
	// Learned is called with the addresses of an allowed name's answer (A and AAAA records
	// anywhere in the answer section, following CNAMEs) and the TTL to keep them (the
	// smallest record TTL, at least MinTTL, at most MaxTTL). May be nil.
	//
	// The reply is sent to the sandbox only after Learned returns, so that the
	// firewall is open by the time the sandbox connects. Learned may be called
	// from several goroutines at once.
	Learned func(name string, addrs []netip.Addr, ttl time.Duration)
}

// Config configures a Server.
type Config struct {
	// Upstreams are "host:port" DNS servers tried in order.
	Upstreams []string
	// Client returns the client of a query's source address; ok false means the
	// source is no sandbox: the query is answered REFUSED.
	// It is called for every query, so it must be fast.
	Client func(src netip.Addr) (c Client, ok bool)
	// Timeout bounds one upstream exchange (default 2s).
	Timeout time.Duration
	Logger  *slog.Logger // may be nil
}

// The bounds of the TTL passed to Client.Learned. The floor keeps a
// zero-TTL answer from closing the firewall before the sandbox connects;
// the ceiling keeps a stale address from staying open for a day.
const (
	MinTTL = 5 * time.Second
	MaxTTL = 10 * time.Minute
)

const (
	defaultTimeout = 2 * time.Second
	// maxInFlight bounds the queries being forwarded at once, over all
	// sandboxes. A query beyond it is dropped, as an overloaded server
	// would, and the client retries.
	maxInFlight = 256
	// maxTCPConns bounds open DNS-over-TCP connections; a connection beyond
	// it is closed on accept.
	maxTCPConns = 256
	// tcpIdleTimeout is how long a TCP connection may take to send its next
	// query, and to take a reply.
	tcpIdleTimeout = 10 * time.Second
	// maxQuerySize bounds a query from a sandbox. A query is one question and
	// an OPT record, well under this; anything longer is not a query.
	maxQuerySize = 4096
	// upstreamUDPSize is the EDNS0 buffer size advertised to upstreams and
	// to clients: the DNS Flag Day 2020 value, which avoids IP fragmentation.
	upstreamUDPSize = 1232
	// maxClientUDPSize caps the EDNS0 buffer size a client may claim.
	maxClientUDPSize = 4096
)

// Server is the resolver for sandboxes. Serve and ServeTCP may run on
// several sockets at once; Close stops them all.
type Server struct {
	upstreams []string
	client    func(netip.Addr) (Client, bool)
	log       *slog.Logger
	udp, tcp  *dns.Client

	// inflight holds a token for each query being forwarded.
	inflight chan struct{}
	// done is closed by Close.
	done chan struct{}

	mu     sync.Mutex
	closed bool // guarded by mu
	pcs    map[net.PacketConn]struct{}
	lns    map[net.Listener]struct{}
	conns  map[net.Conn]struct{}
	// wg counts running Serve and ServeTCP loops and the goroutines they
	// start. A loop adds for its goroutines while it is itself counted, so
	// no Add races with the Wait in Close.
	wg sync.WaitGroup
}

// New returns a server for cfg. It fails with an InvalidArgument error when
// cfg has no upstreams or no Client function.
func New(cfg Config) (*Server, error) {
	if len(cfg.Upstreams) == 0 {
		return nil, errdefs.New(errdefs.InvalidArgument, "dns filter: no upstream servers")
	}
	if cfg.Client == nil {
		return nil, errdefs.New(errdefs.InvalidArgument, "dns filter: no Client function")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		upstreams: append([]string(nil), cfg.Upstreams...),
		client:    cfg.Client,
		log:       cfg.Logger,
		udp:       &dns.Client{Net: "udp", Timeout: cfg.Timeout, UDPSize: upstreamUDPSize},
		tcp:       &dns.Client{Net: "tcp", Timeout: cfg.Timeout},
		inflight:  make(chan struct{}, maxInFlight),
		done:      make(chan struct{}),
		pcs:       make(map[net.PacketConn]struct{}),
		lns:       make(map[net.Listener]struct{}),
		conns:     make(map[net.Conn]struct{}),
	}, nil
}

// Close stops every Serve and ServeTCP loop, closing their sockets and
// connections, abandons the queries being forwarded, and waits until all of
// the server's goroutines have returned. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	close(s.done)
	for pc := range s.pcs {
		pc.Close()
	}
	for l := range s.lns {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// trackLoop registers a Serve loop on pc or a ServeTCP loop on l (the other
// is nil), so that Close can close its socket and wait for it; it reports
// false when the server is closed. On true the caller must call untrackLoop
// when the loop ends.
func (s *Server) trackLoop(pc net.PacketConn, l net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if pc != nil {
		s.pcs[pc] = struct{}{}
	}
	if l != nil {
		s.lns[l] = struct{}{}
	}
	s.wg.Add(1)
	return true
}

func (s *Server) untrackLoop(pc net.PacketConn, l net.Listener) {
	s.mu.Lock()
	delete(s.pcs, pc)
	delete(s.lns, l)
	s.mu.Unlock()
	s.wg.Done()
}

// trackConn registers an accepted TCP connection; it reports false, having
// closed c, when the server is closed or has too many connections.
// Preconditions: the calling ServeTCP loop is counted in wg.
func (s *Server) trackConn(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.conns) >= maxTCPConns {
		c.Close()
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrackConn(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}
