// Package clustermux serves a den server's cluster port: one TCP listener
// for everything servers say to each other. Every connection is mutual TLS
// against the cluster CA; after the handshake the dialler sends one byte
// naming the protocol (raft's stream, or den's cluster RPCs), and the
// connection goes to the listener of that protocol.
//
// The TLS configurations come from internal/pki: the caller decides which
// roles may connect (servers only, for raft and RPCs).
package clustermux

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/denhq/den/internal/errdefs"
)

// Protocols: the first byte a dialler sends after the TLS handshake.
// Values are on the wire: append only.
const (
	// ProtoRaft is hashicorp/raft's network transport stream.
	ProtoRaft byte = 'R'
	// ProtoRPC is den's cluster RPCs: write forwarding, join, discovery.
	ProtoRPC byte = 'C'
	// ProtoAPI is HTTP to a server's API handler: a follower passes API
	// requests to the leader over it.
	ProtoAPI byte = 'A'
	// ProtoSandbox is HTTP to a server's sandbox-traffic handler (E2B
	// envd routing), passed the same way.
	ProtoSandbox byte = 'S'
)

// handshakeTimeout bounds the TLS handshake and the protocol byte of an
// accepted connection, so a silent peer cannot hold a goroutine.
const handshakeTimeout = 10 * time.Second

// Mux accepts connections on a listener and hands each, after its TLS
// handshake and protocol byte, to the sub-listener of that protocol.
// Register every protocol with Listener before Serve.
type Mux struct {
	ln   net.Listener
	conf *tls.Config
	log  *slog.Logger

	mu   sync.Mutex
	subs map[byte]*subListener

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
}

// New returns a Mux over ln; conf is the server side of mutual TLS (see
// pki.CA.ServerConfig). The Mux owns ln from now on: Close closes it.
func New(ln net.Listener, conf *tls.Config, log *slog.Logger) *Mux {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Mux{ln: ln, conf: conf, log: log, subs: map[byte]*subListener{}, done: make(chan struct{})}
}

// Listener returns the listener of proto's connections. Its Addr is the
// Mux's. Closing it closes connections that arrive for proto later.
func (m *Mux) Listener(proto byte) net.Listener {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.subs[proto]; ok {
		return s
	}
	s := &subListener{addr: m.ln.Addr(), conns: make(chan net.Conn), done: make(chan struct{}), muxDone: m.done}
	m.subs[proto] = s
	return s
}

// Addr is the address the Mux listens on.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Serve starts accepting in the background; Close stops it.
func (m *Mux) Serve() {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.acceptLoop()
	}()
}

func (m *Mux) acceptLoop() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.log.Warn("cluster listener stopped", "error", err)
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(c)
		}()
	}
}

// route completes the handshake, reads the protocol byte and hands the
// connection over; it closes the connection on any failure.
func (m *Mux) route(raw net.Conn) {
	c := tls.Server(raw, m.conf)
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	var b [1]byte
	if err := c.Handshake(); err != nil {
		m.log.Debug("cluster connection refused: TLS handshake", "remote", raw.RemoteAddr().String(), "error", err)
		c.Close()
		return
	}
	if _, err := c.Read(b[:]); err != nil {
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	m.mu.Lock()
	s := m.subs[b[0]]
	m.mu.Unlock()
	if s == nil {
		m.log.Debug("cluster connection refused: unknown protocol", "remote", raw.RemoteAddr().String(), "proto", b[0])
		c.Close()
		return
	}
	select {
	case s.conns <- c:
	case <-s.done:
		c.Close()
	case <-m.done:
		c.Close()
	}
}

// Close stops accepting, closes the listener and every sub-listener, and
// waits for connections in their handshake. Connections already handed
// over belong to their protocol's owner. Close is idempotent.
func (m *Mux) Close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.done)
		err = m.ln.Close()
		m.wg.Wait()
	})
	return err
}

type subListener struct {
	addr      net.Addr
	conns     chan net.Conn
	closeOnce sync.Once
	done      chan struct{}
	muxDone   chan struct{}
}

func (s *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	case <-s.muxDone:
		return nil, net.ErrClosed
	}
}

func (s *subListener) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	return nil
}

func (s *subListener) Addr() net.Addr { return s.addr }

// Dial connects to the cluster port at addr, completes mutual TLS with conf
// (see pki.ClientConfig) and selects proto. A refused or failed connection
// is Unavailable; nothing was sent on it.
func Dial(ctx context.Context, addr string, proto byte, conf *tls.Config) (*tls.Conn, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: conf}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.Unavailable, err, "dial cluster port %s", addr)
	}
	c := nc.(*tls.Conn)
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetWriteDeadline(dl)
	}
	if _, err := c.Write([]byte{proto}); err != nil {
		c.Close()
		return nil, errdefs.Wrap(errdefs.Unavailable, err, "dial cluster port %s", addr)
	}
	_ = c.SetWriteDeadline(time.Time{})
	return c, nil
}

// String names a protocol for logs.
func String(proto byte) string {
	switch proto {
	case ProtoRaft:
		return "raft"
	case ProtoRPC:
		return "rpc"
	case ProtoAPI:
		return "api"
	case ProtoSandbox:
		return "sandbox"
	}
	return fmt.Sprintf("proto(%d)", proto)
}
