package store

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"

	"github.com/denhq/den/internal/clustermux"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/pki"
)

// Cluster RPCs: one JSON request, then one JSON response, repeated on a
// connection of the cluster port's RPC protocol. Only servers can connect
// (the mux checks their certificates), and a request's From must be the
// server its certificate names.

// RPC operations. Values are on the wire.
const (
	opApply   = "apply"   // apply Cmd on the leader; answer its index
	opBarrier = "barrier" // answer the leader's applied index after a barrier
	opHello   = "hello"   // exchange servers known while forming a cluster
	opJoin    = "join"    // leader: add From as a voter
)

// peer is a server: its raft ID and cluster address.
type peer struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

type rpcRequest struct {
	Op   string `json:"op"`
	From peer   `json:"from"`
	Cmd  []byte `json:"cmd,omitempty"`
}

type rpcResponse struct {
	// Index: apply's entry, or barrier's applied index.
	Index uint64 `json:"index,omitempty"`
	// Code and Message carry an error's errdefs kind and text.
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	// NotLeader: the answering server is not the leader and did nothing;
	// Leader is the one it knows, if any.
	NotLeader bool `json:"not_leader,omitempty"`
	Leader    peer `json:"leader,omitempty"`
	// Hello's answer: the servers the answerer knows, and whether it is
	// already part of a cluster (then the asker should join, not
	// bootstrap).
	Known     []peer `json:"known,omitempty"`
	InCluster bool   `json:"in_cluster,omitempty"`
}

// rpcErr turns err into a response's Code and Message.
func rpcErr(err error) rpcResponse {
	return rpcResponse{Code: errdefs.KindOf(err).Code(), Message: err.Error()}
}

// err is the response's error with its kind, or nil.
func (r *rpcResponse) err() error {
	if r.Code == "" {
		return nil
	}
	k, _ := errdefs.KindOfCode(r.Code)
	return errdefs.New(k, "%s", r.Message)
}

// rpcTimeout bounds one RPC when the caller's ctx has no deadline.
const rpcTimeout = 15 * time.Second

// rpcServer answers the cluster RPCs.
type rpcServer struct {
	c  *cluster
	ln net.Listener

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newRPCServer(c *cluster, ln net.Listener) *rpcServer {
	return &rpcServer{c: c, ln: ln, conns: map[net.Conn]struct{}{}}
}

// serve starts accepting. Preconditions: c.raft is set.
func (s *rpcServer) serve() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := s.ln.Accept()
			if err != nil {
				return
			}
			if !s.add(conn) {
				conn.Close()
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer s.remove(conn)
				s.handleConn(conn)
			}()
		}
	}()
}

func (s *rpcServer) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *rpcServer) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// close stops accepting, closes open connections and waits for handlers.
func (s *rpcServer) close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

func (s *rpcServer) handleConn(conn net.Conn) {
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return
	}
	who, err := pki.PeerIdentity(tc.ConnectionState())
	if err != nil || who.Role != pki.RoleServer {
		return
	}
	dec := json.NewDecoder(bufio.NewReader(conn))
	enc := json.NewEncoder(conn)
	for {
		var req rpcRequest
		if err := dec.Decode(&req); err != nil {
			return
		}
		var resp rpcResponse
		if req.From.ID != who.ID {
			resp = rpcErr(errdefs.New(errdefs.PermissionDenied,
				"cluster rpc: the request says it is from server %q but its certificate names %q", req.From.ID, who.ID))
		} else {
			resp = s.handle(req)
		}
		if err := enc.Encode(&resp); err != nil {
			return
		}
	}
}

func (s *rpcServer) handle(req rpcRequest) rpcResponse {
	switch req.Op {
	case opApply:
		return s.c.serveApply(req.Cmd)
	case opBarrier:
		return s.c.serveBarrier()
	case opHello:
		return s.c.serveHello(req.From)
	case opJoin:
		return s.c.serveJoin(req.From)
	}
	return rpcErr(errdefs.New(errdefs.Unsupported, "cluster rpc: unknown operation %q", req.Op))
}

// notLeader is the answer of a follower to a leader-only RPC.
func (c *cluster) notLeader() rpcResponse {
	l, _ := c.leader()
	return rpcResponse{NotLeader: true, Leader: l}
}

// serveApply applies a forwarded command if this server leads.
func (c *cluster) serveApply(cmd []byte) rpcResponse {
	if c.raft.State() != raft.Leader {
		return c.notLeader()
	}
	idx, err := c.batch.apply(cmd, rpcTimeout)
	if errors.Is(err, raft.ErrNotLeader) {
		return c.notLeader()
	}
	resp := rpcResponse{Index: idx}
	if err != nil {
		resp = rpcErr(err)
		resp.Index = idx
	}
	return resp
}

// serveBarrier answers the index up to which a server must apply to have
// seen every write committed before this call.
func (c *cluster) serveBarrier() rpcResponse {
	if c.raft.State() != raft.Leader {
		return c.notLeader()
	}
	if err := c.raft.Barrier(rpcTimeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return c.notLeader()
		}
		return rpcErr(mapRaftErr(err))
	}
	idx, _ := c.fsm.appliedIndex()
	return rpcResponse{Index: idx}
}

// serveHello records the asker as a server that wants to form the cluster
// and answers the servers this one knows.
func (c *cluster) serveHello(from peer) rpcResponse {
	c.disc.add(from)
	return rpcResponse{Known: c.disc.list(), InCluster: c.inCluster()}
}

// inCluster reports whether raft has a configuration: this server has
// bootstrapped, joined or heard from a leader.
func (c *cluster) inCluster() bool {
	f := c.raft.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) > 0
}

// serveJoin adds from as a voter if this server leads; a server already in
// the configuration at that address is left as it is.
func (c *cluster) serveJoin(from peer) rpcResponse {
	if c.raft.State() != raft.Leader {
		return c.notLeader()
	}
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return rpcErr(mapRaftErr(err))
	}
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) == from.ID && string(srv.Address) == from.Addr && srv.Suffrage == raft.Voter {
			return rpcResponse{}
		}
	}
	err := c.raft.AddVoter(raft.ServerID(from.ID), raft.ServerAddress(from.Addr), 0, rpcTimeout).Error()
	if errors.Is(err, raft.ErrNotLeader) {
		return c.notLeader()
	}
	if err != nil {
		return rpcErr(fmt.Errorf("add server %s at %s as a voter: %w", from.ID, from.Addr, mapRaftErr(err)))
	}
	c.log.Info("server joined the cluster", "server_id", from.ID, "addr", from.Addr)
	return rpcResponse{}
}

// rpcClient calls other servers' RPCs, keeping a few idle connections per
// address.
type rpcClient struct {
	tls  *tls.Config
	self peer

	mu     sync.Mutex
	idle   map[string][]*rpcConn
	closed bool
}

// maxIdleRPCConns is how many idle connections to one server are kept.
const maxIdleRPCConns = 4

// rpcConn is one client connection.
type rpcConn struct {
	conn *tls.Conn
	enc  *json.Encoder
	dec  *json.Decoder
}

func newRPCConn(c *tls.Conn) *rpcConn {
	return &rpcConn{conn: c, enc: json.NewEncoder(c), dec: json.NewDecoder(bufio.NewReader(c))}
}

// alive reports whether an idle connection is still open with nothing
// unread on it. A connection its server closed (a restart, a crash: the
// kernel still sends FIN or RST) is noticed here, before a request is sent
// on it; a request lost that way would be ambiguous.
func (rc *rpcConn) alive() bool {
	tc, ok := rc.conn.NetConn().(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	err = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true // never wait
	})
	return err == nil && alive
}

func newRPCClient(conf *tls.Config, self peer) *rpcClient {
	return &rpcClient{tls: conf, self: self, idle: map[string][]*rpcConn{}}
}

// errNotSent marks a failed call whose request certainly did not reach the
// server (the connection could not be made): safe to retry elsewhere.
var errNotSent = errors.New("request not sent")

// call sends req to the server at addr and returns its answer. An error
// wrapping errNotSent means nothing was sent; any other transport error is
// ambiguous (the server may have acted).
func (cl *rpcClient) call(ctx context.Context, addr string, req rpcRequest) (*rpcResponse, error) {
	req.From = cl.self
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rpcTimeout)
		defer cancel()
	}
	rc, err := cl.get(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("cluster rpc %s to %s: %w: %w", req.Op, addr, errNotSent, err)
	}
	dl, _ := ctx.Deadline()
	_ = rc.conn.SetDeadline(dl)
	var resp rpcResponse
	if err := rc.enc.Encode(&req); err != nil {
		rc.conn.Close()
		return nil, errdefs.Wrap(errdefs.Unavailable, err, "cluster rpc %s to %s", req.Op, addr)
	}
	if err := rc.dec.Decode(&resp); err != nil {
		rc.conn.Close()
		return nil, errdefs.Wrap(errdefs.Unavailable, err, "cluster rpc %s to %s: no answer", req.Op, addr)
	}
	_ = rc.conn.SetDeadline(time.Time{})
	cl.put(addr, rc)
	return &resp, nil
}

func (cl *rpcClient) get(ctx context.Context, addr string) (*rpcConn, error) {
	cl.mu.Lock()
	if cl.closed {
		cl.mu.Unlock()
		return nil, errdefs.New(errdefs.Unavailable, "store is closed")
	}
	for len(cl.idle[addr]) > 0 {
		list := cl.idle[addr]
		rc := list[len(list)-1]
		cl.idle[addr] = list[:len(list)-1]
		if rc.alive() {
			cl.mu.Unlock()
			return rc, nil
		}
		rc.conn.Close()
	}
	cl.mu.Unlock()
	c, err := clustermux.Dial(ctx, addr, clustermux.ProtoRPC, cl.tls)
	if err != nil {
		return nil, err
	}
	return newRPCConn(c), nil
}

func (cl *rpcClient) put(addr string, rc *rpcConn) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.closed || len(cl.idle[addr]) >= maxIdleRPCConns {
		rc.conn.Close()
		return
	}
	cl.idle[addr] = append(cl.idle[addr], rc)
}

// forget closes the idle connections to addr (its server went away).
func (cl *rpcClient) forget(addr string) {
	cl.mu.Lock()
	list := cl.idle[addr]
	delete(cl.idle, addr)
	cl.mu.Unlock()
	for _, rc := range list {
		rc.conn.Close()
	}
}

func (cl *rpcClient) close() {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.closed = true
	for addr, list := range cl.idle {
		for _, rc := range list {
			rc.conn.Close()
		}
		delete(cl.idle, addr)
	}
}
