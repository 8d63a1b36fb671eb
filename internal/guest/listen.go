package guest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/denhq/den/internal/errdefs"
)

// Remote forwarding (ssh -R): a listener in the sandbox whose connections
// the host fetches one by one.
//
//   - GET /ports/{port}/listen with "Connection: Upgrade" and "Upgrade:
//     den-listen" listens on 127.0.0.1:port in the sandbox (port 0: any
//     free port), answers 101 with the bound port in the Den-Port header,
//     and then writes one line "ID PEER\n" on the stream for every
//     connection it accepts (PEER: the connecting side's address). The listener lives exactly as long as the stream: when
//     the host closes it (or the agent closes), the listener and the
//     connections nobody fetched are closed.
//   - GET /accepted/{ID} with "Upgrade: den-tcp" answers 101 and turns
//     the stream into a byte tunnel to that accepted connection, as GET
//     /ports/{port} does for a dialled one. Each ID is fetched once; one
//     not fetched within acceptedTTL is closed.
//
// IDs are 128-bit random, so a process in the sandbox, which cannot reach
// the agent's socket anyway, could not guess them either.

// ListenUpgrade is the Upgrade protocol of GET /ports/{port}/listen.
const ListenUpgrade = "den-listen"

// ListenPortHeader carries the port a listen upgrade bound.
const ListenPortHeader = "Den-Port"

const (
	// acceptedTTL is how long an accepted connection waits to be fetched.
	acceptedTTL = 30 * time.Second
	// maxPendingAccepted bounds the accepted connections waiting to be
	// fetched across the agent; more are closed at once.
	maxPendingAccepted = 256
)

// acceptedConns holds accepted connections until the host fetches them.
type acceptedConns struct {
	mu sync.Mutex
	m  map[string]net.Conn
}

// put records c under a new ID and closes it after acceptedTTL unless
// taken first; ok is false (c closed) when too many are waiting.
func (ac *acceptedConns) put(c net.Conn) (string, bool) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if ac.m == nil {
		ac.m = map[string]net.Conn{}
	}
	if len(ac.m) >= maxPendingAccepted {
		c.Close()
		return "", false
	}
	ac.m[id] = c
	time.AfterFunc(acceptedTTL, func() {
		if c := ac.take(id); c != nil {
			c.Close()
		}
	})
	return id, true
}

// take removes and returns the connection of id; nil when none.
func (ac *acceptedConns) take(id string) net.Conn {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	c := ac.m[id]
	delete(ac.m, id)
	return c
}

// serveListen serves GET /ports/{port}/listen: see the top of the file.
func (a *Agent) serveListen(w http.ResponseWriter, r *http.Request) {
	port, err := strconv.Atoi(r.PathValue("port"))
	if err != nil || port < 0 || port > 65535 {
		writeHTTPError(w, errdefs.New(errdefs.InvalidArgument, "invalid port %q: want a number from 0 to 65535", r.PathValue("port")))
		return
	}
	if !isUpgrade(r, ListenUpgrade) {
		writeHTTPError(w, errdefs.New(errdefs.InvalidArgument, "GET /ports/%d/listen needs HTTP/1.1 with Connection: Upgrade and Upgrade: %s", port, ListenUpgrade))
		return
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		writeHTTPError(w, errdefs.Wrap(errdefs.FailedPrecondition, err, "listen on port %d in the sandbox", port))
		return
	}
	bound := ln.Addr().(*net.TCPAddr).Port
	conn, br, ok := switchProtocols(w, ListenUpgrade, http.Header{ListenPortHeader: {strconv.Itoa(bound)}})
	if !ok {
		ln.Close()
		return
	}
	if !a.goOwned(func() { a.runListener(conn, br, ln) }) {
		conn.Close()
		ln.Close()
	}
}

// runListener announces each connection ln accepts on host until the
// host's stream ends or the agent closes, then closes ln.
func (a *Agent) runListener(host net.Conn, hostR io.Reader, ln net.Listener) {
	var once sync.Once
	stop := func() { once.Do(func() { ln.Close(); host.Close() }) }
	defer stop()
	defer context.AfterFunc(a.ctx, stop)()
	go func() {
		// The host never writes: a read returns at the stream's end.
		var b [1]byte
		for {
			if _, err := hostR.Read(b[:]); err != nil {
				stop()
				return
			}
		}
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		id, ok := a.accepted.put(c)
		if !ok {
			continue
		}
		if _, err := fmt.Fprintf(host, "%s %s\n", id, c.RemoteAddr()); err != nil {
			if c := a.accepted.take(id); c != nil {
				c.Close()
			}
			return
		}
	}
}

// serveAccepted serves GET /accepted/{id}: see the top of the file.
func (a *Agent) serveAccepted(w http.ResponseWriter, r *http.Request) {
	if !isUpgrade(r, PortUpgrade) {
		writeHTTPError(w, errdefs.New(errdefs.InvalidArgument, "GET /accepted/{id} needs HTTP/1.1 with Connection: Upgrade and Upgrade: %s", PortUpgrade))
		return
	}
	local := a.accepted.take(r.PathValue("id"))
	if local == nil {
		writeHTTPError(w, errdefs.New(errdefs.NotFound, "no accepted connection %q", r.PathValue("id")))
		return
	}
	conn, br, ok := switchProtocols(w, PortUpgrade, nil)
	if !ok {
		local.Close()
		return
	}
	if !a.goOwned(func() { a.tunnel(conn, br, local) }) {
		conn.Close()
		local.Close()
	}
}
