package agent

import (
	"context"
	"time"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/nodeproto"
	"github.com/denhq/den/internal/pki"
)

// joinWithRetry joins with cfg.Token, trying the servers in turn with
// backoff while they are unreachable, and saves the identity.
func (a *Agent) joinWithRetry(ctx context.Context) (*identity, error) {
	if a.cfg.Token == "" {
		return nil, errdefs.New(errdefs.InvalidArgument, "node has no identity in %s yet: a join token is required (den token create)", a.cfg.DataDir)
	}
	tok, err := nodeproto.ParseToken(a.cfg.Token)
	if err != nil {
		return nil, err
	}
	csr, key, err := pki.NewCSR(a.cfg.Name)
	if err != nil {
		return nil, err
	}
	req := nodeproto.JoinRequest{Token: a.cfg.Token, CSR: string(csr), Name: a.cfg.Name,
		Pool: a.cfg.Pool, Labels: a.cfg.Labels, Capacity: a.cfg.Capacity}
	b := backoff{max: a.cfg.MaxBackoff}
	for {
		id, err := a.join(ctx, tok, req, key)
		if err == nil {
			if err := id.save(a.cfg.DataDir); err != nil {
				return nil, err
			}
			a.log.Info("joined the cluster", "node", id.NodeID)
			return id, nil
		}
		if permanent(err) || ctx.Err() != nil {
			return nil, err
		}
		a.log.Warn("join failed; retrying", "error", err)
		if !b.wait(ctx) {
			return nil, ctx.Err()
		}
	}
}

// join makes one join exchange with the next server.
func (a *Agent) join(ctx context.Context, tok nodeproto.Token, req nodeproto.JoinRequest, keyPEM []byte) (*identity, error) {
	addr := a.server()
	c, err := dial(ctx, addr, nodeproto.JoinTLSConfig(tok.CAHash))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	c.SetDeadline(time.Now().Add(DefaultDialTimeout))
	resp, err := nodeproto.Join(c, req, tok.CAHash)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.KindOf(err), err, "join through %s", addr)
	}
	return newIdentity(resp.NodeID, []byte(resp.Cert), keyPEM, []byte(resp.CA))
}
