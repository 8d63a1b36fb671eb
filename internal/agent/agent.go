// Package agent is the data plane's link to the control plane: den agent
// joins the cluster once with a token, then keeps one outbound mutual-TLS
// connection to any of the servers, with a nodelink session over it that
// carries its hello, heartbeats and certificate renewals, and whatever
// else others register on its Mux. The node needs no inbound port.
package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/nodeproto"
	"github.com/denhq/den/internal/pki"
)

// Defaults of Config.
const (
	DefaultMaxBackoff  = 5 * time.Second
	DefaultDialTimeout = 10 * time.Second
	minBackoff         = 100 * time.Millisecond
)

// Config configures one agent identity.
type Config struct {
	// Servers are node-listener addresses (host:port) of any servers of
	// the cluster; the agent connects to one at a time. Required.
	Servers []string
	// Token is the join token, needed only until the agent has joined
	// (its identity is then in DataDir).
	Token string
	// DataDir holds the node's identity: its ID, key, certificate and
	// the cluster CA (files mode 0600). Required.
	DataDir string
	// Name, Pool and Labels describe the node; Name is required.
	Name     string
	Pool     string
	Labels   map[string]string
	Capacity nodeproto.Capacity
	Runtimes []string
	Version  string
	// Sandboxes lists the IDs of the sandboxes the node runs, for its
	// hello; nil means none.
	Sandboxes func() []string
	// Mux serves the calls and streams servers make to the node. Nil
	// means an empty Mux.
	Mux *nodelink.Mux
	// OnSession is called with each new session once the server accepted
	// its hello, so that others can call the server; nil means none.
	OnSession func(*nodelink.Session)
	// Setup, when set, runs once in Run, after the node has its ID and
	// before its first session: it builds what runs behind the link (the
	// sandbox node), registers its handlers on mux (the agent's Mux) and
	// returns its hooks. An error ends Run. Each agent of RunSim calls it
	// with its own ID and, when Config.Mux is nil, its own Mux.
	Setup func(ctx context.Context, nodeID string, mux *nodelink.Mux) (Hooks, error)
	// NeedsRenewal decides when the certificate is renewed; nil means
	// pki.NeedsRenewal (a third of its life left).
	NeedsRenewal func(cert *x509.Certificate, now time.Time) bool
	// MaxBackoff caps the wait between connection attempts; 0 means
	// DefaultMaxBackoff.
	MaxBackoff time.Duration
	// Metrics, when set, records the link's state (NewMetrics); the
	// agents of RunSim share it.
	Metrics *Metrics
	Logger  *slog.Logger
}

// Validate reports whether cfg is usable.
func (cfg *Config) Validate() error {
	switch {
	case len(cfg.Servers) == 0:
		return errdefs.New(errdefs.InvalidArgument, "agent config: at least one server address is required")
	case cfg.DataDir == "":
		return errdefs.New(errdefs.InvalidArgument, "agent config: DataDir is required")
	case pki.ValidID(cfg.Name) != nil:
		return errdefs.New(errdefs.InvalidArgument, "agent config: node name %q must be 1-63 characters of a-z, 0-9, '-', '_' and '.'", cfg.Name)
	}
	if err := nodeproto.ValidatePool(cfg.Pool); err != nil {
		return err
	}
	if err := nodeproto.ValidateLabels(cfg.Labels); err != nil {
		return err
	}
	return nodeproto.ValidateCapacity(cfg.Capacity)
}

func (cfg *Config) setDefaults() {
	if cfg.Mux == nil {
		cfg.Mux = nodelink.NewMux()
	}
	if cfg.NeedsRenewal == nil {
		cfg.NeedsRenewal = pki.NeedsRenewal
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
}

// Hooks are what Config.Setup built, per agent. Nil fields are skipped.
type Hooks struct {
	// OnSession is called with each new session after Config.OnSession.
	OnSession func(*nodelink.Session)
	// Sandboxes replaces Config.Sandboxes.
	Sandboxes func() []string
	// Close is called when Run returns.
	Close func()
}

// Agent is one node's link to the cluster.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	hooks Hooks // from cfg.Setup, set at the start of Run

	mu sync.Mutex
	id *identity // replaced by a renewal
	// next is the index in cfg.Servers of the next server to dial.
	next int
}

// Run joins the cluster if the node has no identity yet, then keeps a
// session with a server until ctx ends, reconnecting with backoff. It
// returns nil when ctx ends, or an error that retrying cannot fix: a bad
// config or token, a refused join, or a node the servers no longer know.
func Run(ctx context.Context, cfg Config) error {
	a, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// New validates cfg and makes sure the node has an identity: it loads it
// from DataDir, or joins with cfg.Token and saves it.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	a := &Agent{cfg: cfg, log: cfg.Logger, next: rand.IntN(len(cfg.Servers))}
	id, err := loadIdentity(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if id == nil {
		if id, err = a.joinWithRetry(ctx); err != nil {
			return nil, err
		}
	}
	a.id = id
	a.log = a.log.With("node", id.NodeID)
	return a, nil
}

// NodeID is the node's ID in the cluster.
func (a *Agent) NodeID() string { return a.identity().NodeID }

func (a *Agent) identity() *identity {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.id
}

// sandboxes lists the node's sandboxes for a hello or heartbeat.
func (a *Agent) sandboxes() []string {
	switch {
	case a.hooks.Sandboxes != nil:
		return a.hooks.Sandboxes()
	case a.cfg.Sandboxes != nil:
		return a.cfg.Sandboxes()
	}
	return nil
}

// sessionUp tells the hooks of a new session.
func (a *Agent) sessionUp(s *nodelink.Session) {
	if a.cfg.OnSession != nil {
		a.cfg.OnSession(s)
	}
	if a.hooks.OnSession != nil {
		a.hooks.OnSession(s)
	}
}

// server returns the address to dial next, and moves on.
func (a *Agent) server() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	addr := a.cfg.Servers[a.next%len(a.cfg.Servers)]
	a.next++
	return addr
}

// Run keeps a session with a server until ctx ends; see the package Run.
// Call it once.
func (a *Agent) Run(ctx context.Context) error {
	if a.cfg.Setup != nil {
		h, err := a.cfg.Setup(ctx, a.NodeID(), a.cfg.Mux)
		if err != nil {
			return fmt.Errorf("set up node %s: %w", a.NodeID(), err)
		}
		a.hooks = h
		if h.Close != nil {
			defer h.Close()
		}
	}
	b := backoff{max: a.cfg.MaxBackoff, round: len(a.cfg.Servers)}
	for {
		hello, err := a.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if permanent(err) {
			return err
		}
		if hello {
			b.reset()
		}
		a.cfg.Metrics.down(a.NodeID())
		a.log.Warn("node link lost; reconnecting", "error", err)
		if !b.wait(ctx) {
			return nil
		}
	}
}

// permanent reports whether err means that retrying is pointless.
func permanent(err error) bool {
	switch errdefs.KindOf(err) {
	case errdefs.PermissionDenied, errdefs.InvalidArgument, errdefs.FailedPrecondition:
		return true
	}
	return false
}

// dial connects to addr with cfg and completes the TLS handshake.
func dial(ctx context.Context, addr string, cfg *tls.Config) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultDialTimeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{KeepAlive: 15 * time.Second}, Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, classifyDial(addr, err)
	}
	return c.(*tls.Conn), nil
}

// classifyDial keeps a certificate refusal's kind (PermissionDenied from
// the verification) and calls everything else Unavailable.
func classifyDial(addr string, err error) error {
	if errdefs.KindOf(err) == errdefs.PermissionDenied {
		return errdefs.Wrap(errdefs.PermissionDenied, err, "connect to %s", addr)
	}
	return errdefs.Wrap(errdefs.Unavailable, err, "connect to %s", addr)
}

// backoff doubles from minBackoff up to max; each wait is a random time
// between half and all of the current step, so that many agents that
// lost the same server do not come back in step. With round > 1 (the
// agent's servers, tried in turn) the step grows once per round of
// failed attempts, not once per attempt: after a leader dies the others
// refuse until one of them is elected, and a step grown on each refusal
// kept agents away from the new leader for up to 30 s (5 s steps across
// three servers); now the servers are each tried at least every few
// hundred ms until an election's usual second or two has passed.
type backoff struct {
	max   time.Duration
	round int // attempts per round; 0 or 1: every attempt is a round
	cur   time.Duration
	tries int // attempts in the current round
}

func (b *backoff) reset() { b.cur, b.tries = 0, 0 }

// step advances to the next attempt and returns the upper bound of the
// wait before it.
func (b *backoff) step() time.Duration {
	b.tries++
	if b.round > 1 && b.tries%b.round != 0 {
		return minBackoff // within a round: the shortest step
	}
	b.cur = min(max(2*b.cur, minBackoff), b.max)
	return b.cur
}

// wait sleeps the next backoff; false when ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	cur := b.step()
	d := cur/2 + rand.N(cur/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
