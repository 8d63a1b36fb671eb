package store

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/denhq/den/internal/clustermux"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/pki"
)

// cluster is a Store's part in a networked cluster: its cluster port
// (raft's stream and den's RPCs over one mutual-TLS listener), the RPCs it
// serves, and the client it forwards writes and joins with.
//
// Goroutines: the mux's accept loop (owned by mux), raft's transport
// (owned by trans) and one RPC handler per accepted connection (owned by
// rpcServer); close stops and waits for all of them.
type cluster struct {
	cfg      *ClusterConfig
	id       string
	log      *slog.Logger
	fsm      *fsm
	mux      *clustermux.Mux
	trans    *raft.NetworkTransport
	contacts *contacts
	client   *rpcClient
	rpc      *rpcServer
	disc     *discovery
	raft     *raft.Raft // set once raft has started; read-only after
	batch    *batcher   // raft's group commit; set with raft
}

// transportTimeout bounds one raft RPC on the wire (append entries,
// votes); raft's default. Snapshot installs scale it by size.
const transportTimeout = 10 * time.Second

// newCluster starts the cluster port: the mux and raft's transport over it.
// RPCs are served once raft runs (see serveRPCs).
func newCluster(cfg Config, f *fsm, log *slog.Logger) *cluster {
	cc := cfg.Cluster
	c := &cluster{
		cfg: cc, id: cfg.NodeID, log: log, fsm: f,
		contacts: newContacts(),
		disc:     newDiscovery(peer{ID: cfg.NodeID, Addr: cc.Advertise}),
	}
	c.mux = clustermux.New(cc.Listener, cc.ServerTLS, log)
	stream := &streamLayer{
		Listener:  c.mux.Listener(clustermux.ProtoRaft),
		advertise: advertiseAddr(cc.Advertise), tls: cc.ClientTLS, contacts: c.contacts,
	}
	c.client = newRPCClient(cc.ClientTLS, peer{ID: cfg.NodeID, Addr: cc.Advertise})
	c.rpc = newRPCServer(c, c.mux.Listener(clustermux.ProtoRPC))
	// The server's HTTP handlers take these later (ClusterListener), once
	// the store is open; registered now, a follower's request that reaches
	// a leader still starting waits for them instead of being cut off.
	c.mux.Listener(clustermux.ProtoAPI)
	c.mux.Listener(clustermux.ProtoSandbox)
	c.mux.Serve()
	c.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 3, Timeout: transportTimeout,
		Logger: newHclogAdapter(log, "raft-transport"),
	})
	return c
}

// close stops the cluster port and everything on it. Preconditions: raft
// is shut down.
// The port closes first, so that peers dialling now are refused (and
// retry elsewhere) rather than accepted and cut off mid-request.
func (c *cluster) close() error {
	err := c.mux.Close()
	c.rpc.close()
	c.client.close()
	return errors.Join(err, c.trans.Close())
}

// advertiseAddr is a host:port as a net.Addr: raft's network transport
// takes its local address from its stream layer's Addr, and that is the
// address the other servers must dial, not the (maybe 0.0.0.0) bound one.
type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

// streamLayer is raft's stream over the cluster port. Connections in both
// directions are mutual TLS between server certificates; every read
// records when this server last heard from the peer (see contacts).
type streamLayer struct {
	net.Listener
	advertise advertiseAddr
	tls       *tls.Config
	contacts  *contacts
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func (s *streamLayer) Accept() (net.Conn, error) {
	c, err := s.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return s.contacts.track(c), nil
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := clustermux.Dial(ctx, string(addr), clustermux.ProtoRaft, s.tls)
	if err != nil {
		return nil, err
	}
	return s.contacts.track(c), nil
}

// contacts records when this server last read anything from each peer
// server over raft's stream: a follower hears the leader's heartbeats, the
// leader its followers' answers. It is what `den server members` shows as
// last contact.
type contacts struct {
	mu   sync.RWMutex
	last map[string]*atomic.Int64 // server ID -> unix nanoseconds
}

func newContacts() *contacts { return &contacts{last: map[string]*atomic.Int64{}} }

// track wraps a TLS connection so reads on it count as contact with its
// peer; other connections are returned as they are.
func (cs *contacts) track(c net.Conn) net.Conn {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return c
	}
	id, err := pki.PeerIdentity(tc.ConnectionState())
	if err != nil {
		return c
	}
	return &trackedConn{Conn: c, at: cs.entry(id.ID)}
}

func (cs *contacts) entry(id string) *atomic.Int64 {
	cs.mu.RLock()
	e := cs.last[id]
	cs.mu.RUnlock()
	if e != nil {
		return e
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if e = cs.last[id]; e == nil {
		e = new(atomic.Int64)
		cs.last[id] = e
	}
	return e
}

// lastContact is when this server last heard from id; zero when never.
func (cs *contacts) lastContact(id string) time.Time {
	cs.mu.RLock()
	defer cs.mu.RUnlock()
	e := cs.last[id]
	if e == nil || e.Load() == 0 {
		return time.Time{}
	}
	return time.Unix(0, e.Load())
}

type trackedConn struct {
	net.Conn
	at *atomic.Int64
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.at.Store(time.Now().UnixNano())
	}
	return n, err
}

// leader returns the current leader, or false when none is known.
func (c *cluster) leader() (peer, bool) {
	addr, id := c.raft.LeaderWithID()
	if addr == "" || id == "" {
		return peer{}, false
	}
	return peer{ID: string(id), Addr: string(addr)}, true
}

// errNoLeader is what a write gets when no leader was elected in time.
func errNoLeader(wait time.Duration) error {
	return errdefs.New(errdefs.Unavailable,
		"no raft leader was elected within %s: are a majority of the servers up and reachable on their cluster ports? (den server members)", wait)
}
