package cluster

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"net"
	"slices"
	"time"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/nodeproto"
	"github.com/denhq/den/internal/pki"
	"github.com/denhq/den/internal/store"
)

// serveJoin answers the one join request of a connection without a
// client certificate, then closes it. Nothing else is served on it.
func (s *Server) serveJoin(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	var req nodeproto.JoinRequest
	if err := nodeproto.ReadFrame(c, &req); err != nil {
		s.log.Debug("join: unreadable request", "remote", c.RemoteAddr().String(), "error", err)
		nodeproto.WriteFrame(c, nodeproto.JoinResponse{Error: nodeproto.WireError(
			errdefs.New(errdefs.InvalidArgument, "a connection without a node certificate may only send a join request"))})
		return
	}
	resp, err := s.join(s.ctx, req)
	if err != nil {
		s.log.Info("join refused", "remote", c.RemoteAddr().String(), "name", req.Name, "error", err)
		resp = nodeproto.JoinResponse{Error: nodeproto.WireError(err)}
	}
	nodeproto.WriteFrame(c, resp)
}

// join admits a node: it checks the token, signs the request for a new
// node ID and records the node while consuming one use of the token.
func (s *Server) join(ctx context.Context, req nodeproto.JoinRequest) (nodeproto.JoinResponse, error) {
	tok, err := nodeproto.ParseToken(req.Token)
	if err != nil {
		return nodeproto.JoinResponse{}, err
	}
	if !slices.ContainsFunc(s.cfg.CA.Trusted(), func(c *x509.Certificate) bool { return pki.CertHash(c) == tok.CAHash }) {
		return nodeproto.JoinResponse{}, errdefs.New(errdefs.PermissionDenied,
			"join token %s is for another cluster CA (another cluster's, or one rotated away since: create a new token)", tok.ID)
	}
	if req.Role == nodeproto.RoleServer {
		return s.joinServer(ctx, tok, req)
	}
	if err := validateJoin(req); err != nil {
		return nodeproto.JoinResponse{}, err
	}
	// The node ID names the key of the request: an agent that retries a
	// join whose answer it lost gets the same ID and costs no second use
	// of its token (store.JoinNode), and no one else can claim the ID.
	keyHash, err := pki.CSRKeyHash([]byte(req.CSR))
	if err != nil {
		return nodeproto.JoinResponse{}, err
	}
	id := "n-" + keyHash[:16]
	now := s.cfg.Now()
	// A refused token costs no raft entry: check it against a snapshot
	// first. The FSM checks again, atomically, when the join applies.
	if err := precheckToken(s.cfg.Store.Snapshot(), tok, id, now); err != nil {
		return nodeproto.JoinResponse{}, err
	}
	// Signed before the join is recorded: a certificate of a node that
	// the store then refuses is never sent.
	cert, err := s.cfg.CA.Signer().SignNode([]byte(req.CSR), id)
	if err != nil {
		return nodeproto.JoinResponse{}, err
	}
	n := &store.Node{ID: id, Name: req.Name, Pool: req.Pool, Labels: req.Labels,
		Capacity: store.NodeCapacity(req.Capacity)}
	err = s.cfg.Store.JoinNode(ctx, tok.ID, tok.SecretHash(), now, n)
	switch {
	case errdefs.Is(err, errdefs.AlreadyExists):
		s.log.Info("node joined again (a retried join)", "node", id, "name", req.Name, "token", tok.ID)
	case err != nil:
		return nodeproto.JoinResponse{}, err
	default:
		s.log.Info("node joined", "node", id, "name", req.Name, "token", tok.ID)
	}
	return nodeproto.JoinResponse{NodeID: id, Cert: string(cert), CA: string(s.cfg.CA.BundlePEM())}, nil
}

// joinServer admits a server: a server token, a server certificate for
// the request's key, and one use of the token (none for a retry of the
// same key). The server then joins raft with the certificate and reads
// the CA's key from the replicated state.
func (s *Server) joinServer(ctx context.Context, tok nodeproto.Token, req nodeproto.JoinRequest) (nodeproto.JoinResponse, error) {
	if err := pki.ValidID(req.Name); err != nil {
		return nodeproto.JoinResponse{}, errdefs.Wrap(errdefs.InvalidArgument, err, "server id")
	}
	if req.Pool != "" || len(req.Labels) > 0 || req.Capacity != (nodeproto.Capacity{}) || len(req.Hosts) > 16 {
		return nodeproto.JoinResponse{}, errdefs.New(errdefs.InvalidArgument, "a server join takes no pool, labels or capacity, and at most 16 hosts")
	}
	keyHash, err := pki.CSRKeyHash([]byte(req.CSR))
	if err != nil {
		return nodeproto.JoinResponse{}, err
	}
	now := s.cfg.Now()
	if rec, err := s.cfg.Store.Snapshot().JoinToken(tok.ID); err == nil && rec.Role != store.RoleServer {
		return nodeproto.JoinResponse{}, errdefs.New(errdefs.PermissionDenied, "join token %s admits agents, not servers: make one with den token create --server", tok.ID)
	}
	// Signed before the join is recorded, as for nodes: the certificate is
	// sent only once the store counted the join.
	cert, err := s.cfg.CA.Signer().SignServer([]byte(req.CSR), req.Name, req.Hosts)
	if err != nil {
		return nodeproto.JoinResponse{}, err
	}
	if err := s.cfg.Store.JoinServer(ctx, tok.ID, tok.SecretHash(), now, keyHash); err != nil {
		return nodeproto.JoinResponse{}, err
	}
	s.log.Info("server admitted", "server", req.Name, "token", tok.ID)
	return nodeproto.JoinResponse{NodeID: req.Name, Cert: string(cert), CA: string(s.cfg.CA.BundlePEM())}, nil
}

func validateJoin(req nodeproto.JoinRequest) error {
	if err := pki.ValidID(req.Name); err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "node name")
	}
	if err := nodeproto.ValidatePool(req.Pool); err != nil {
		return err
	}
	if err := nodeproto.ValidateLabels(req.Labels); err != nil {
		return err
	}
	return nodeproto.ValidateCapacity(req.Capacity)
}

// precheckToken refuses a token that the join would refuse, with the
// same message (see store.JoinNode). A token missing here is left to the
// join's write: on a follower, a token made through another server a
// moment ago may not be in the snapshot yet.
func precheckToken(snap *store.Snapshot, tok nodeproto.Token, nodeID string, now time.Time) error {
	rec, err := snap.JoinToken(tok.ID)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(rec.Hash), []byte(tok.SecretHash())) != 1 {
		return errdefs.New(errdefs.PermissionDenied, "join token %s is not valid", tok.ID)
	}
	if rec.Role != "" {
		return errdefs.New(errdefs.PermissionDenied, "join token %s admits servers, not agents", tok.ID)
	}
	if !rec.ExpiresAt.IsZero() && !now.Before(rec.ExpiresAt) {
		return errdefs.New(errdefs.PermissionDenied, "join token %s expired at %s", tok.ID, rec.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if _, err := snap.Node(nodeID); rec.Used >= rec.Uses && err != nil {
		return errdefs.New(errdefs.PermissionDenied, "join token %s is used up (%d of %d joins)", tok.ID, rec.Used, rec.Uses)
	}
	return nil
}
