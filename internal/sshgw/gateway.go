// Package sshgw is den's SSH gateway: native SSH into sandboxes. A client
// logs in as the sandbox (user name = sandbox ID or name) with a public
// key its tenant registered; the gateway then serves the session channels
// (shell and exec with PTYs, env, signals, exit statuses, the sftp
// subsystem) by driving the sandbox's guest agent, and TCP forwarding
// (ssh -L through the agent's port tunnels, ssh -R through its listeners).
//
// The gateway holds no state of its own: who may log in, and how to reach
// a sandbox, come from a Backend (implemented by internal/server).
package sshgw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Backend is what the gateway needs of den. Its methods are called
// concurrently.
type Backend interface {
	// Authorize returns the sandbox that user (a sandbox ID or name)
	// names when a tenant that registered the key with SHA256
	// fingerprint fp owns it. Every refusal is an error, which the
	// gateway never shows the client.
	Authorize(ctx context.Context, user, fp string) (Sandbox, error)
	// Begin makes sandbox id running (resuming a suspended one) and
	// counts it as active until end is called. end must be called once.
	Begin(ctx context.Context, id string) (end func(), err error)
	// DialGuest opens a connection to the sandbox's guest agent, which
	// speaks HTTP on it.
	DialGuest(ctx context.Context, id string) (net.Conn, error)
	// DialPort opens a tunnel to 127.0.0.1:port inside the sandbox.
	DialPort(ctx context.Context, id string, port int) (net.Conn, error)
}

// Sandbox is a sandbox a client logged in to.
type Sandbox struct {
	ID   string
	Name string
}

// Config configures a Gateway.
type Config struct {
	// HostKey is the gateway's host key (see LoadHostKey). Required.
	HostKey ssh.Signer
	// Backend authorises logins and reaches sandboxes. Required.
	Backend Backend
	// Logger receives the gateway's logs; nil discards them.
	Logger *slog.Logger
	// KeepaliveInterval is how often the gateway asks an idle client
	// whether it is alive; 0 means 30 s. After KeepaliveCountMax
	// unanswered asks (0 means 3) the connection is closed.
	KeepaliveInterval time.Duration
	KeepaliveCountMax int
	// HandshakeTimeout bounds the SSH handshake and login; 0 means 30 s.
	HandshakeTimeout time.Duration
}

// Validate checks the required fields and fills in the defaults.
func (c *Config) Validate() error {
	if c.HostKey == nil || c.Backend == nil {
		return errors.New("ssh gateway config: HostKey and Backend are required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.KeepaliveInterval <= 0 {
		c.KeepaliveInterval = 30 * time.Second
	}
	if c.KeepaliveCountMax <= 0 {
		c.KeepaliveCountMax = 3
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 30 * time.Second
	}
	return nil
}

// Gateway is an SSH server for den's sandboxes. Its methods are safe for
// concurrent use.
type Gateway struct {
	cfg    Config
	ssh    *ssh.ServerConfig
	log    *slog.Logger
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	lns    map[net.Listener]struct{}
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup // connection goroutines
}

// Permission extensions set at login.
const (
	extSandboxID   = "den-sandbox-id"
	extSandboxName = "den-sandbox-name"
)

// errRefused is the one answer to every failed login: an unknown key, an
// unknown sandbox and another tenant's sandbox look the same.
var errRefused = errors.New("permission denied")

// New returns a Gateway for cfg.
func New(cfg Config) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gateway{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel,
		lns: map[net.Listener]struct{}{}, conns: map[net.Conn]struct{}{}}
	g.ssh = &ssh.ServerConfig{
		PublicKeyCallback: g.authorize,
		ServerVersion:     "SSH-2.0-den",
		BannerCallback:    nil,
	}
	g.ssh.AddHostKey(cfg.HostKey)
	return g, nil
}

// authorize is the public key callback: the key's fingerprint and the
// user name go to the Backend. Password and keyboard-interactive logins
// have no callback, so the library refuses them.
func (g *Gateway) authorize(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	ctx, cancel := context.WithTimeout(g.ctx, 10*time.Second)
	defer cancel()
	fp := ssh.FingerprintSHA256(key)
	sb, err := g.cfg.Backend.Authorize(ctx, meta.User(), fp)
	if err != nil {
		g.log.Info("ssh login refused", "remote", meta.RemoteAddr().String(), "fingerprint", fp, "err", err)
		return nil, errRefused
	}
	return &ssh.Permissions{Extensions: map[string]string{extSandboxID: sb.ID, extSandboxName: sb.Name, "fingerprint": fp}}, nil
}

// Serve accepts connections on ln until ln fails or Close is called; it
// returns nil after Close. It may be called for several listeners.
func (g *Gateway) Serve(ln net.Listener) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		ln.Close()
		return nil
	}
	g.lns[ln] = struct{}{}
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.lns, ln)
		g.mu.Unlock()
	}()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if g.ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("ssh gateway: accept: %w", err)
		}
		if !g.track(nc) {
			nc.Close()
			return nil
		}
		go func() {
			defer g.wg.Done()
			defer g.untrack(nc)
			g.serveConn(nc)
		}()
	}
}

// track registers a connection and its goroutine; false once closed.
func (g *Gateway) track(nc net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.conns[nc] = struct{}{}
	g.wg.Add(1)
	return true
}

func (g *Gateway) untrack(nc net.Conn) {
	g.mu.Lock()
	delete(g.conns, nc)
	g.mu.Unlock()
	nc.Close()
}

// Close stops every listener and closes every connection, then waits for
// their goroutines. It is idempotent.
func (g *Gateway) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	g.cancel()
	for ln := range g.lns {
		ln.Close()
	}
	for c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
	return nil
}
