// Package cluster is the servers' node listener: the port den agents dial
// out to. A connection without a client certificate may make one join
// (token and certificate request in, node certificate out); a connection
// with a node certificate of the cluster CA becomes a nodelink session
// whose handlers know the node's ID. The package keeps the sessions it
// holds in a Registry, writes nodes' transitions (joined, up, down) to
// the replicated store, and keeps heartbeats in memory.
package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/nodeproto"
	"github.com/denhq/den/internal/pki"
	"github.com/denhq/den/internal/store"
)

// Defaults of Config.
const (
	DefaultHeartbeatTTL      = 15 * time.Second
	DefaultHeartbeatInterval = time.Second
	// handshakeTimeout bounds a TLS handshake and a join's exchange: a
	// peer that connects and stalls holds nothing for long.
	handshakeTimeout = 10 * time.Second
)

// Config configures the node listener of one server.
type Config struct {
	// Listen is the address agents dial (host:port; port 0 picks one);
	// Listen uses it, Serve does not.
	Listen string
	// ServerID names this server in node records ("connected to").
	ServerID string
	// CA is the cluster CA: what it trusts verifies node certificates,
	// and its signer signs those of joining and renewing nodes (a
	// rotation replaces both while the listener runs). Cert is this
	// server's certificate (pki.CA.IssueServer, then Leaf.TLS); the
	// trusted CA certificates are sent along with it so that a joining
	// agent can check it against its token's CA hash.
	CA   *pki.Authority
	Cert tls.Certificate
	// Certs, when set, holds this server's certificate in place of Cert
	// and may replace it while the listener runs (renewal).
	Certs *pki.Holder
	Store *store.Store
	// Mux serves the calls and streams agents make; the listener adds
	// its own methods (nodeproto.MethodHello, ...) to it. Register other
	// handlers before Listen. Nil means a new, otherwise empty Mux.
	Mux *nodelink.Mux
	// HeartbeatTTL is how long a node may go without a heartbeat before
	// it is marked down; 0 means DefaultHeartbeatTTL.
	HeartbeatTTL time.Duration
	// HeartbeatInterval is how often agents are told to heartbeat; 0
	// means DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// HelloTimeout is how long a node's session may go without its
	// hello before it is closed; 0 means 10 s.
	HelloTimeout time.Duration
	// OnConnect is called when a node's session is accepted (after its
	// hello), OnDisconnect when that session ends. A node that
	// reconnects may get its new session's OnConnect before the old
	// one's OnDisconnect: compare the sessions. Both may be nil; both run
	// on the listener's goroutines and must not block for long.
	OnConnect, OnDisconnect func(nodeID string, s *nodelink.Session)
	// Accept, when set, is asked before a node's hello is recorded; an
	// error refuses the session with it (den server: only the leader
	// keeps agents, so that no follower records a node ready that it
	// then sends away). Give it an Unavailable error: the agent tries the
	// next server.
	Accept func() error
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Validate reports whether cfg is usable.
func (cfg *Config) Validate() error {
	switch {
	case pki.ValidID(cfg.ServerID) != nil:
		return errdefs.New(errdefs.InvalidArgument, "cluster config: ServerID %q is not a valid ID", cfg.ServerID)
	case cfg.CA == nil || len(cfg.Cert.Certificate) == 0 && cfg.Certs == nil || cfg.Store == nil:
		return errdefs.New(errdefs.InvalidArgument, "cluster config: CA, Cert and Store are required")
	case cfg.HeartbeatTTL < 0 || cfg.HeartbeatInterval < 0 || cfg.HelloTimeout < 0:
		return errdefs.New(errdefs.InvalidArgument, "cluster config: negative heartbeat TTL, heartbeat interval or hello timeout")
	}
	return nil
}

func (cfg *Config) setDefaults() {
	if cfg.Mux == nil {
		cfg.Mux = nodelink.NewMux()
	}
	if cfg.HeartbeatTTL == 0 {
		cfg.HeartbeatTTL = DefaultHeartbeatTTL
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.HelloTimeout == 0 {
		cfg.HelloTimeout = handshakeTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
}

// Server is a running node listener.
type Server struct {
	// Registry holds the sessions of the nodes connected here.
	*Registry

	cfg    Config
	log    *slog.Logger
	ln     net.Listener
	tls    *tls.Config
	ctx    context.Context // ends with Close; parent of sessions
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{} // open connections, closed by Close
}

// Listen starts the node listener on cfg.Listen: it accepts agents until
// ctx ends or Close is called.
func Listen(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Listen == "" {
		return nil, errdefs.New(errdefs.InvalidArgument, "cluster config: Listen is required")
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.Unavailable, err, "listen for nodes on %s", cfg.Listen)
	}
	return Serve(ctx, ln, cfg)
}

// TakeOver adopts every node the store holds as up, whichever server it
// said hello to: each gets the TTL from now to say hello here before it
// is marked down with the epoch the store holds (a node that reconnected
// meanwhile has a newer one and is left alone). A server that gains the
// lead calls it, since agents keep their sessions with the leader only:
// without it, a node whose server died with it would stay ready forever,
// and its sandboxes would never be reported lost.
func (s *Server) TakeOver() error {
	return s.Registry.adoptFrom(s.cfg.Store.Snapshot(), true)
}

// Serve is Listen on a listener of the caller's (cfg.Listen is
// ignored); the Server owns ln from now on, and closes it when Serve
// fails (on a bad config, or when the store cannot be read).
func Serve(ctx context.Context, ln net.Listener, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		ln.Close()
		return nil, err
	}
	cfg.setDefaults()
	sctx, cancel := context.WithCancel(ctx)
	s := &Server{cfg: cfg, log: cfg.Logger, ln: ln, tls: serverTLS(cfg.CA, cfg.certs()), ctx: sctx, cancel: cancel,
		conns: map[net.Conn]struct{}{}}
	s.Registry = newRegistry(s)
	if err := s.Registry.adopt(cfg.Store.Snapshot()); err != nil {
		cancel()
		ln.Close()
		return nil, fmt.Errorf("adopt the nodes of server %s: %w", cfg.ServerID, err)
	}
	cfg.Mux.HandleCall(nodeproto.MethodHello, s.hello)
	cfg.Mux.HandleCall(nodeproto.MethodHeartbeat, s.heartbeat)
	cfg.Mux.HandleCall(nodeproto.MethodRenew, s.renew)
	s.wg.Add(2)
	go s.acceptLoop()
	go s.monitor()
	context.AfterFunc(sctx, func() { ln.Close() })
	s.log.Info("node listener started", "addr", ln.Addr().String(), "server", cfg.ServerID)
	return s, nil
}

// Addr is the listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// CAHash is the hash of the CA that signs now, which join tokens carry.
func (s *Server) CAHash() string { return s.cfg.CA.SignerHash() }

// Close stops accepting, ends every session and waits for the listener's
// goroutines. Nodes are not marked down: another server, or this one
// restarted, takes them over when they reconnect.
func (s *Server) Close() error {
	s.cancel()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// certs holds Cert unless Certs is set.
func (cfg *Config) certs() *pki.Holder {
	if cfg.Certs != nil {
		return cfg.Certs
	}
	return pki.NewHolder(cfg.Cert)
}

// serverTLS presents what certs holds with the trusted CAs after it, and
// accepts a client certificate only of a node of a trusted CA, or none (a
// join).
func serverTLS(ca *pki.Authority, certs *pki.Holder) *tls.Config {
	return pki.WithClientCAs(&tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			cert := *certs.Get()
			cert.Certificate = slices.Clone(cert.Certificate)
			for _, c := range ca.Trusted() {
				cert.Certificate = append(cert.Certificate, c.Raw)
			}
			return &cert, nil
		},
		ClientAuth: tls.VerifyClientCertIfGiven,
		VerifyPeerCertificate: func(raw [][]byte, chains [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return nil // a join
			}
			if len(chains) == 0 {
				return errors.New("no verified client certificate")
			}
			id, err := pki.IdentityOf(chains[0][0])
			if err != nil {
				return err
			}
			if id.Role != pki.RoleNode {
				return fmt.Errorf("a %s certificate may not connect to the node listener", id.Role)
			}
			return nil
		},
	}, ca)
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Error("node listener stopped", "error", err)
			}
			return
		}
		if !s.track(c) {
			c.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			s.serveConn(c)
		}()
	}
}

// track records an open connection; false once Close began.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// serveConn completes the handshake and routes the connection: a join
// without a client certificate, a session with one.
func (s *Server) serveConn(raw net.Conn) {
	tc := tls.Server(raw, s.tls)
	ctx, cancel := context.WithTimeout(s.ctx, handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.log.Debug("node handshake failed", "remote", raw.RemoteAddr().String(), "error", err)
		return
	}
	cs := tc.ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		s.serveJoin(tc)
		return
	}
	id, err := pki.PeerIdentity(cs)
	if err != nil || id.Role != pki.RoleNode {
		return // VerifyPeerCertificate refused these already
	}
	s.serveNode(tc, id.ID)
}
