package cluster

import (
	"context"
	"encoding/json"
	"net"
	"time"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/nodeproto"
	"github.com/denhq/den/internal/pki"
	"github.com/denhq/den/internal/store"
)

// nodeConn is one node's connection to this server.
type nodeConn struct {
	id    string
	ready chan struct{} // closed once sess is set
	sess  *nodelink.Session
	// helloed is closed by the first accepted hello (Registry.connected).
	helloed chan struct{}
}

type connKey struct{}

// connOf is the connection a handler's call came on.
func connOf(ctx context.Context) (*nodeConn, error) {
	c, _ := ctx.Value(connKey{}).(*nodeConn)
	if c == nil {
		return nil, errdefs.New(errdefs.Internal, "no node connection in the handler's context")
	}
	select {
	case <-c.ready:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// serveNode runs a node's session until it ends or the server closes.
func (s *Server) serveNode(c net.Conn, nodeID string) {
	nc := &nodeConn{id: nodeID, ready: make(chan struct{}), helloed: make(chan struct{})}
	hctx := nodelink.WithPeer(context.WithValue(s.ctx, connKey{}, nc), nodeID)
	sess, err := nodelink.Server(c, s.cfg.Mux, nodelink.Options{Context: hctx, Logger: s.log})
	if err != nil {
		s.log.Warn("node session failed to start", "node", nodeID, "error", err)
		return
	}
	nc.sess = sess
	close(nc.ready)
	// A node holds a connection only if it says hello soon.
	t := time.NewTimer(s.cfg.HelloTimeout)
	select {
	case <-nc.helloed:
	case <-t.C:
		s.log.Info("node sent no hello; closing its session", "node", nodeID, "timeout", s.cfg.HelloTimeout)
		sess.Close()
	case <-sess.Done():
	case <-s.ctx.Done():
	}
	t.Stop()
	select {
	case <-sess.Done():
	case <-s.ctx.Done():
	}
	sess.Close()
	s.Registry.closed(nc)
}

func decodeReq(req json.RawMessage, v any, method string) error {
	if err := json.Unmarshal(req, v); err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "%s: decode the request", method)
	}
	return nil
}

// hello accepts a node's session: the node must have a record, and it
// is recorded up (ready, or draining) with a new epoch.
func (s *Server) hello(ctx context.Context, raw json.RawMessage) (any, error) {
	nc, err := connOf(ctx)
	if err != nil {
		return nil, err
	}
	var h nodeproto.Hello
	if err := decodeReq(raw, &h, nodeproto.MethodHello); err != nil {
		return nil, err
	}
	if err := validateHello(h); err != nil {
		return nil, err
	}
	if s.cfg.Accept != nil {
		if err := s.cfg.Accept(); err != nil {
			return nil, err
		}
	}
	// The record is checked by the write, not against this server's
	// snapshot: on a follower, a node that joined through another server
	// a moment ago may not be in it yet.
	epoch, err := s.cfg.Store.NodeUp(ctx, nc.id, s.cfg.ServerID, s.cfg.Now(), store.NodeHello{
		Pool: h.Pool, Labels: h.Labels, Capacity: store.NodeCapacity(h.Capacity), Runtimes: h.Runtimes, Version: h.Version})
	if errdefs.IsNotFound(err) {
		return nil, errdefs.New(errdefs.PermissionDenied, "node %s is not registered (it was removed): join again with a token", nc.id)
	}
	if err != nil {
		return nil, err
	}
	if err := s.waitRecord(ctx, nc.id, epoch); err != nil {
		return nil, err
	}
	s.Registry.connected(nc, epoch)
	s.log.Info("node connected", "node", nc.id, "name", h.Name, "epoch", epoch, "sandboxes", len(h.Sandboxes))
	return nodeproto.HelloReply{NodeID: nc.id, Server: s.cfg.ServerID,
		HeartbeatMs: s.cfg.HeartbeatInterval.Milliseconds()}, nil
}

// waitRecord waits until this server's snapshot holds node id's record
// of epoch or later, so that OnConnect and whoever reads the store after
// it see the record of this connection. It returns at once on the leader;
// a follower applies the entry a moment after the leader committed it.
func (s *Server) waitRecord(ctx context.Context, id string, epoch uint64) error {
	for {
		snap := s.cfg.Store.Snapshot()
		if n, err := snap.Node(id); err == nil && n.Epoch >= epoch {
			return nil
		}
		select {
		case <-snap.NodesChanged():
		case <-ctx.Done():
			return errdefs.Wrap(errdefs.Unavailable, ctx.Err(), "wait for the record of node %s", id)
		}
	}
}

func validateHello(h nodeproto.Hello) error {
	if err := nodeproto.ValidatePool(h.Pool); err != nil {
		return err
	}
	if err := nodeproto.ValidateLabels(h.Labels); err != nil {
		return err
	}
	if len(h.Runtimes) > 16 {
		return errdefs.New(errdefs.InvalidArgument, "%d runtimes: at most 16 are allowed", len(h.Runtimes))
	}
	for _, r := range h.Runtimes {
		if pki.ValidID(r) != nil {
			return errdefs.New(errdefs.InvalidArgument, "runtime name %q is invalid", r)
		}
	}
	if len(h.Version) > 64 {
		return errdefs.New(errdefs.InvalidArgument, "version is over 64 characters")
	}
	return nodeproto.ValidateCapacity(h.Capacity)
}

// heartbeat notes that the node is alive on this session.
func (s *Server) heartbeat(ctx context.Context, raw json.RawMessage) (any, error) {
	nc, err := connOf(ctx)
	if err != nil {
		return nil, err
	}
	var hb nodeproto.Heartbeat
	if err := decodeReq(raw, &hb, nodeproto.MethodHeartbeat); err != nil {
		return nil, err
	}
	if len(hb.Trust) > 80 || len(hb.Issuer) > 80 {
		return nil, errdefs.New(errdefs.InvalidArgument, "%s: trust and issuer are hashes of at most 80 characters", nodeproto.MethodHeartbeat)
	}
	if err := s.Registry.beat(nc, hb.Trust, hb.Issuer); err != nil {
		return nil, err
	}
	return nodeproto.HeartbeatReply{Trust: s.cfg.CA.TrustHash(), Signer: s.cfg.CA.SignerHash()}, nil
}

// renew signs a new certificate for the calling node: the same ID, a new
// key of the node's choice.
func (s *Server) renew(ctx context.Context, raw json.RawMessage) (any, error) {
	nc, err := connOf(ctx)
	if err != nil {
		return nil, err
	}
	var req nodeproto.RenewRequest
	if err := decodeReq(raw, &req, nodeproto.MethodRenew); err != nil {
		return nil, err
	}
	if !s.Registry.current(nc) {
		return nil, errdefs.New(errdefs.FailedPrecondition, "renew the certificate of node %s: say hello first", nc.id)
	}
	cert, err := s.cfg.CA.Signer().SignNode([]byte(req.CSR), nc.id)
	if err != nil {
		return nil, err
	}
	s.log.Info("node certificate renewed", "node", nc.id)
	return nodeproto.RenewReply{Cert: string(cert), CA: string(s.cfg.CA.BundlePEM())}, nil
}
