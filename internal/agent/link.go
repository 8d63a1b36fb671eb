package agent

import (
	"context"
	"time"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/nodeproto"
	"github.com/denhq/den/internal/pki"
)

// callTimeout bounds the agent's own calls (hello, heartbeat, renew).
const callTimeout = 10 * time.Second

// renewRetry is the wait after a failed renewal before the next try.
const renewRetry = time.Minute

// session connects to the next server, says hello and heartbeats until
// the session or ctx ends. hello reports whether the server accepted the
// hello (the backoff then starts over).
func (a *Agent) session(ctx context.Context) (hello bool, err error) {
	id := a.identity()
	tcfg, err := id.tlsConfig()
	if err != nil {
		return false, err
	}
	addr := a.server()
	c, err := dial(ctx, addr, tcfg)
	if err != nil {
		return false, err
	}
	sess, err := nodelink.Client(c, a.cfg.Mux, nodelink.Options{Logger: a.log})
	if err != nil {
		c.Close()
		return false, errdefs.Wrap(errdefs.Unavailable, err, "start the node link to %s", addr)
	}
	defer sess.Close()
	reply, err := a.hello(ctx, sess)
	if err != nil {
		return false, err
	}
	a.log.Info("node link up", "server", reply.Server, "addr", addr)
	a.cfg.Metrics.up(id.NodeID, len(a.sandboxes()), id.Leaf.Cert.NotAfter)
	a.sessionUp(sess)
	return true, a.heartbeats(ctx, sess, time.Duration(reply.HeartbeatMs)*time.Millisecond)
}

func (a *Agent) hello(ctx context.Context, sess *nodelink.Session) (nodeproto.HelloReply, error) {
	h := nodeproto.Hello{Name: a.cfg.Name, Pool: a.cfg.Pool, Labels: a.cfg.Labels,
		Capacity: a.cfg.Capacity, Runtimes: a.cfg.Runtimes, Version: a.cfg.Version}
	h.Sandboxes = a.sandboxes()
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var reply nodeproto.HelloReply
	if err := sess.Call(cctx, nodeproto.MethodHello, h, &reply); err != nil {
		return reply, err
	}
	return reply, nil
}

// heartbeats calls the server every interval until the session or ctx
// ends or a heartbeat fails; it renews the certificate when due.
func (a *Agent) heartbeats(ctx context.Context, sess *nodelink.Session, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var nextRenew time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sess.Done():
			return errdefs.New(errdefs.Unavailable, "the server closed the node link")
		case <-t.C:
		}
		id := a.identity()
		hb := nodeproto.Heartbeat{Sandboxes: len(a.sandboxes()), Trust: id.trust(), Issuer: id.issuer()}
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		sent := time.Now()
		var reply nodeproto.HeartbeatReply
		err := sess.Call(cctx, nodeproto.MethodHeartbeat, hb, &reply)
		cancel()
		if err == nil {
			a.cfg.Metrics.heartbeat(a.NodeID(), hb.Sandboxes, time.Since(sent))
		}
		if err != nil {
			// Whatever the server said, a new session is the cure.
			return errdefs.Wrap(errdefs.Unavailable, err, "heartbeat")
		}
		// A rotation of the cluster CA changed what the cluster trusts or
		// signs with: a renewal brings both.
		rotated := reply.Trust != "" && (reply.Trust != hb.Trust || reply.Signer != hb.Issuer)
		if now := time.Now(); now.After(nextRenew) && (rotated || a.cfg.NeedsRenewal(id.Leaf.Cert, now)) {
			if err := a.renew(ctx, sess); err != nil {
				a.log.Warn("certificate renewal failed", "error", err)
				nextRenew = now.Add(renewRetry)
			}
		}
	}
}

// renew gets a certificate for a new key over sess and saves it; the
// next connection uses it.
func (a *Agent) renew(ctx context.Context, sess *nodelink.Session) error {
	old := a.identity()
	csr, key, err := pki.NewCSR(old.NodeID)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var reply nodeproto.RenewReply
	if err := sess.Call(cctx, nodeproto.MethodRenew, nodeproto.RenewRequest{CSR: string(csr)}, &reply); err != nil {
		return err
	}
	caPEM := old.CAPEM
	if reply.CA != "" {
		caPEM = []byte(reply.CA) // the CAs the cluster trusts now
	}
	id, err := newIdentity(old.NodeID, []byte(reply.Cert), key, caPEM)
	if err != nil {
		return err
	}
	if err := id.save(a.cfg.DataDir); err != nil {
		return err
	}
	a.mu.Lock()
	a.id = id
	a.mu.Unlock()
	a.log.Info("certificate renewed", "not_after", id.Leaf.Cert.NotAfter, "issuer", id.issuer(), "trusted_cas", len(id.CAs))
	a.cfg.Metrics.renewed(id.NodeID, id.Leaf.Cert.NotAfter)
	return nil
}
