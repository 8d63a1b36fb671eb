package sshgw

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/denhq/den/internal/guest"
)

// TCP forwarding (RFC 4254 section 7).
//
// direct-tcpip (ssh -L, VS Code Remote): a tunnel to a port on the
// sandbox's loopback through Backend.DialPort. The host the client names
// must be the sandbox itself: localhost, 127.0.0.1, ::1, or the sandbox's
// ID or name.
//
// tcpip-forward (ssh -R): the guest agent listens on 127.0.0.1:PORT in
// the sandbox for as long as the gateway holds its listen stream (GET
// /ports/{port}/listen, see internal/guest/listen.go) and announces each
// connection it accepts by a line "ID PEER-ADDRESS"; the gateway fetches the connection (GET
// /accepted/{id}) and opens a forwarded-tcpip channel to the client for it.

// directTCPIP is the payload of a direct-tcpip channel open.
type directTCPIP struct {
	Host     string
	Port     uint32
	OrigHost string
	OrigPort uint32
}

// directTCPIP serves a direct-tcpip channel.
func (c *conn) directTCPIP(nch ssh.NewChannel) {
	var d directTCPIP
	if err := ssh.Unmarshal(nch.ExtraData(), &d); err != nil {
		_ = nch.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	if !c.isSandboxHost(d.Host) {
		_ = nch.Reject(ssh.Prohibited, fmt.Sprintf("host %q is not this sandbox: forward to localhost, 127.0.0.1, ::1 or %s", d.Host, c.sb.ID))
		return
	}
	if d.Port < 1 || d.Port > 65535 {
		_ = nch.Reject(ssh.ConnectionFailed, fmt.Sprintf("invalid port %d", d.Port))
		return
	}
	stream, err := c.g.cfg.Backend.DialPort(c.ctx, c.sb.ID, int(d.Port))
	if err != nil {
		_ = nch.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		stream.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	defer ch.Close()
	pipe(ch, stream)
}

// isSandboxHost reports whether a forward's host names the sandbox.
func (c *conn) isSandboxHost(h string) bool {
	switch h {
	case "localhost", "127.0.0.1", "::1", c.sb.ID:
		return true
	}
	return c.sb.Name != "" && h == c.sb.Name
}

// forwardRequest is the payload of tcpip-forward and cancel-tcpip-forward.
type forwardRequest struct {
	Addr string
	Port uint32
}

// forwards are a connection's remote forwards by bind address and port.
type forwards struct {
	mu sync.Mutex
	m  map[forwardRequest]net.Conn // the listen stream
}

func (f *forwards) add(k forwardRequest, stream net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[forwardRequest]net.Conn{}
	}
	if _, ok := f.m[k]; ok {
		return false
	}
	f.m[k] = stream
	return true
}

// remove closes and forgets the forward k; false when there is none.
func (f *forwards) remove(k forwardRequest) bool {
	f.mu.Lock()
	stream := f.m[k]
	delete(f.m, k)
	f.mu.Unlock()
	if stream != nil {
		stream.Close()
	}
	return stream != nil
}

// closeAll closes every forward's listen stream.
func (f *forwards) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, s := range f.m {
		s.Close()
		delete(f.m, k)
	}
}

// maxForwards bounds the remote forwards of one connection.
const maxForwards = 32

// tcpipForward answers a tcpip-forward request: a listener in the sandbox
// on 127.0.0.1 (the only address the client may ask for: "", localhost
// or 127.0.0.1).
func (c *conn) tcpipForward(req *ssh.Request) {
	var f forwardRequest
	if ssh.Unmarshal(req.Payload, &f) != nil || f.Port > 65535 {
		_ = req.Reply(false, nil)
		return
	}
	switch f.Addr {
	case "", "localhost", "127.0.0.1":
	default:
		c.log.Info("ssh remote forward refused", "addr", f.Addr)
		_ = req.Reply(false, nil)
		return
	}
	c.fwd.mu.Lock()
	n := len(c.fwd.m)
	c.fwd.mu.Unlock()
	if n >= maxForwards {
		_ = req.Reply(false, nil)
		return
	}
	stream, hdr, err := c.guest.upgrade(c.ctx, fmt.Sprintf("/ports/%d/listen", f.Port), guest.ListenUpgrade)
	if err != nil {
		c.log.Info("ssh remote forward failed", "port", f.Port, "err", err)
		_ = req.Reply(false, nil)
		return
	}
	bound, err := strconv.Atoi(hdr.Get(guest.ListenPortHeader))
	// Forwards are known by the port bound: a client cancels a port 0
	// forward by the port it was told.
	key := forwardRequest{Addr: f.Addr, Port: uint32(bound)}
	if err != nil || bound < 1 || bound > 65535 || !c.fwd.add(key, stream) {
		stream.Close()
		_ = req.Reply(false, nil)
		return
	}
	var reply []byte
	if f.Port == 0 {
		reply = ssh.Marshal(struct{ Port uint32 }{uint32(bound)})
	}
	_ = req.Reply(true, reply)
	c.goChannel(func() { c.acceptForwarded(key, stream) })
}

// cancelTCPIPForward closes a remote forward.
func (c *conn) cancelTCPIPForward(req *ssh.Request) {
	var f forwardRequest
	if ssh.Unmarshal(req.Payload, &f) != nil {
		_ = req.Reply(false, nil)
		return
	}
	_ = req.Reply(c.fwd.remove(f), nil)
}

// maxAcceptID bounds a line of a listen stream.
const maxAcceptID = 128

// acceptForwarded reads the IDs of accepted connections from a listen
// stream and hands each to the client until the stream ends.
func (c *conn) acceptForwarded(f forwardRequest, stream net.Conn) {
	defer c.fwd.remove(f)
	br := bufio.NewReaderSize(stream, maxAcceptID)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return // the stream ended, or a line too long: the agent misbehaved
		}
		id, origin, _ := strings.Cut(string(line[:len(line)-1]), " ")
		c.goChannel(func() { c.forwardAccepted(f, id, origin) })
	}
}

// forwardedTCPIP is the payload of a forwarded-tcpip channel open.
type forwardedTCPIP struct {
	Addr       string
	Port       uint32
	OriginAddr string
	OriginPort uint32
}

// forwardAccepted fetches accepted connection id and opens a
// forwarded-tcpip channel to the client for it.
func (c *conn) forwardAccepted(f forwardRequest, id, origin string) {
	oHost, oPort := "127.0.0.1", uint32(1)
	if h, p, err := net.SplitHostPort(origin); err == nil {
		if n, err := strconv.ParseUint(p, 10, 16); err == nil && n > 0 {
			oHost, oPort = h, uint32(n)
		}
	}
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	local, _, err := c.guest.upgrade(ctx, "/accepted/"+id, guest.PortUpgrade)
	if err != nil {
		return
	}
	// The address as the client asked for it: it finds its forward by it.
	ch, reqs, err := c.sconn.OpenChannel("forwarded-tcpip", ssh.Marshal(forwardedTCPIP{Addr: f.Addr, Port: f.Port, OriginAddr: oHost, OriginPort: oPort}))
	if err != nil {
		local.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	defer ch.Close()
	pipe(ch, local)
}
