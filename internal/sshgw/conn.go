package sshgw

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// conn is one logged-in SSH connection to a sandbox.
type conn struct {
	g     *Gateway
	sconn *ssh.ServerConn
	sb    Sandbox
	guest *guestClient
	ctx   context.Context // ends with the connection
	log   *slog.Logger

	fwd  forwards     // ssh -R listeners
	open atomic.Int64 // goroutines of goChannel running
	wg   sync.WaitGroup
}

// serveConn runs the handshake on nc and serves the connection until it
// ends.
func (g *Gateway) serveConn(nc net.Conn) {
	_ = nc.SetDeadline(time.Now().Add(g.cfg.HandshakeTimeout))
	sconn, chans, reqs, err := ssh.NewServerConn(nc, g.ssh)
	if err != nil {
		return // a failed login or a client that went away: nothing to tell
	}
	_ = nc.SetDeadline(time.Time{})
	defer sconn.Close()
	ctx, cancel := context.WithCancel(g.ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { sconn.Close() })
	defer stop()
	sb := Sandbox{ID: sconn.Permissions.Extensions[extSandboxID], Name: sconn.Permissions.Extensions[extSandboxName]}
	log := g.log.With("sandbox", sb.ID, "remote", nc.RemoteAddr().String())
	log.Info("ssh login", "fingerprint", sconn.Permissions.Extensions["fingerprint"])
	c := &conn{g: g, sconn: sconn, sb: sb, guest: newGuestClient(g.cfg.Backend, sb.ID), ctx: ctx, log: log}
	defer c.guest.close()
	end, err := g.cfg.Backend.Begin(ctx, sb.ID)
	if err != nil {
		// The sandbox cannot run: every channel is refused with the reason.
		log.Warn("ssh session refused", "err", err)
		go ssh.DiscardRequests(reqs)
		for nch := range chans {
			_ = nch.Reject(ssh.ConnectionFailed, err.Error())
		}
		return
	}
	defer end()
	c.wg.Add(2)
	go func() { defer c.wg.Done(); c.keepalive() }()
	go func() { defer c.wg.Done(); c.globalRequests(reqs) }()
	for nch := range chans {
		if c.open.Load() >= maxChannels {
			_ = nch.Reject(ssh.ResourceShortage, fmt.Sprintf("at most %d channels per connection", maxChannels))
			continue
		}
		var serve func(ssh.NewChannel)
		switch nch.ChannelType() {
		case "session":
			serve = c.session
		case "direct-tcpip":
			serve = c.directTCPIP
		default:
			_ = nch.Reject(ssh.UnknownChannelType, "den's ssh gateway supports session and direct-tcpip channels")
			continue
		}
		c.goChannel(func() {
			// Each channel wakes the sandbox again: it may have been
			// suspended by hand since the login.
			end, err := g.cfg.Backend.Begin(ctx, sb.ID)
			if err != nil {
				_ = nch.Reject(ssh.ConnectionFailed, err.Error())
				return
			}
			defer end()
			serve(nch)
		})
	}
	cancel()
	c.fwd.closeAll()
	c.wg.Wait()
}

// maxChannels bounds the channels (sessions, forwards) open at once on
// one connection: each may hold a process or a tunnel in the sandbox.
const maxChannels = 256

// goChannel runs fn on a goroutine the connection waits for, counted as
// an open channel while it runs.
func (c *conn) goChannel(fn func()) {
	c.wg.Add(1)
	c.open.Add(1)
	go func() {
		defer c.wg.Done()
		defer c.open.Add(-1)
		fn()
	}()
}

// globalRequests answers the connection's global requests: remote
// forwards, and keepalives (any reply tells the client we are alive).
func (c *conn) globalRequests(reqs <-chan *ssh.Request) {
	for req := range reqs {
		switch req.Type {
		case "tcpip-forward":
			c.tcpipForward(req)
		case "cancel-tcpip-forward":
			c.cancelTCPIPForward(req)
		case "keepalive@openssh.com", "no-more-sessions@openssh.com":
			_ = req.Reply(true, nil)
		default:
			_ = req.Reply(false, nil)
		}
	}
}

// keepalive asks the client every KeepaliveInterval whether it is alive
// and closes the connection when an ask is not answered within
// KeepaliveInterval × KeepaliveCountMax. Any reply, even a refusal, is an
// answer.
func (c *conn) keepalive() {
	tick := time.NewTicker(c.g.cfg.KeepaliveInterval)
	defer tick.Stop()
	patience := c.g.cfg.KeepaliveInterval * time.Duration(c.g.cfg.KeepaliveCountMax)
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		}
		dead := time.AfterFunc(patience, func() {
			c.log.Info("ssh client stopped answering keepalives")
			c.sconn.Close()
		})
		_, _, err := c.sconn.SendRequest("keepalive@openssh.com", true, nil)
		dead.Stop()
		if err != nil {
			return // the connection is gone
		}
	}
}
