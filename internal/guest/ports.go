package guest

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/denhq/den/internal/errdefs"
)

// Ports as URLs: GET /ports/{port} with "Connection: Upgrade" and
// "Upgrade: den-tcp" opens a TCP connection to the port on the sandbox's
// loopback (127.0.0.1, else [::1]) and, once it is open, answers 101 and
// turns the agent's connection into a raw byte tunnel to it. The host
// reaches a server in the sandbox this way over the guest channel alone
// (a unix socket for gVisor, a yamux stream over virtio-serial for a
// microVM), without any sandbox network.
//
// A tunnel lasts until both directions have ended. The end of one
// direction is passed on as a half-close where the connection supports
// it (TCP and unix sockets, yamux streams); over one that does not (the
// fake driver's pipes) the tunnel closes both connections instead. Close
// of the Agent ends every tunnel.

// PortUpgrade is the Upgrade protocol of GET /ports/{port}.
const PortUpgrade = "den-tcp"

// portDialTimeout bounds the connect to a port on the sandbox's loopback,
// which either answers at once or not at all.
const portDialTimeout = 5 * time.Second

// servePort serves GET /ports/{port}: see the comment at the top of the
// file. Errors are JSON {"code","message"}: 400 for a bad port or a
// request that is not an HTTP/1.1 upgrade to PortUpgrade, 502 when
// nothing listens on the port.
func (a *Agent) servePort(w http.ResponseWriter, r *http.Request) {
	port, err := strconv.Atoi(r.PathValue("port"))
	if err != nil || port < 1 || port > 65535 {
		writeHTTPError(w, errdefs.New(errdefs.InvalidArgument, "invalid port %q: want a number from 1 to 65535", r.PathValue("port")))
		return
	}
	if r.ProtoMajor != 1 || !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", PortUpgrade) {
		writeHTTPError(w, errdefs.New(errdefs.InvalidArgument, "GET /ports/%d needs HTTP/1.1 with Connection: Upgrade and Upgrade: %s", port, PortUpgrade))
		return
	}
	local, err := dialLoopback(r.Context(), port)
	if err != nil {
		writePortError(w, errdefs.Wrap(errdefs.Unavailable, err, "nothing listens on port %d in the sandbox", port))
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		local.Close()
		writeHTTPError(w, errdefs.Wrap(errdefs.Internal, err, "port %d: take over the connection", port))
		return
	}
	_, err = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + PortUpgrade + "\r\n\r\n")
	if err == nil {
		err = brw.Flush()
	}
	if err != nil {
		conn.Close()
		local.Close()
		return
	}
	// brw.Reader may hold bytes the host sent after the request.
	if !a.goOwned(func() { a.tunnel(conn, brw.Reader, local) }) {
		conn.Close()
		local.Close()
	}
}

// dialLoopback connects to port on 127.0.0.1, else on [::1]. The error is
// the IPv4 one: a server on [::1] only is the exception.
func dialLoopback(ctx context.Context, port int) (net.Conn, error) {
	d := net.Dialer{Timeout: portDialTimeout}
	p := strconv.Itoa(port)
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", p))
	if err == nil {
		return c, nil
	}
	if c6, err6 := d.DialContext(ctx, "tcp", net.JoinHostPort("::1", p)); err6 == nil {
		return c6, nil
	}
	return nil, err
}

// tunnel copies bytes between the host's connection (read through hostR,
// which holds what was buffered of it) and the local one until both
// directions have ended or the agent closes, then closes both.
func (a *Agent) tunnel(host net.Conn, hostR io.Reader, local net.Conn) {
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			host.Close()
			local.Close()
		})
	}
	stop := context.AfterFunc(a.ctx, closeBoth)
	defer stop()
	defer closeBoth()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); pipeHalf(local, hostR, closeBoth) }()
	go func() { defer wg.Done(); pipeHalf(host, local, closeBoth) }()
	wg.Wait()
}

// pipeHalf copies src to dst; at src's end it half-closes dst, and when
// it cannot (or the copy failed) it ends the whole tunnel with closeBoth.
func pipeHalf(dst net.Conn, src io.Reader, closeBoth func()) {
	_, err := io.Copy(dst, src)
	if err != nil || !closeWrite(dst) {
		closeBoth()
	}
}

// closeWrite half-closes c: the peer reads EOF, and c can still be read.
// It reports false when c cannot be half-closed.
func closeWrite(c net.Conn) bool {
	if tc, ok := c.(*trackedConn); ok {
		c = tc.Conn
	}
	switch c := c.(type) {
	case interface{ CloseWrite() error }:
		return c.CloseWrite() == nil
	case *yamux.Stream:
		// A yamux Close is a half-close: it sends FIN and reads go on
		// until the peer's FIN (or the session's StreamCloseTimeout).
		return c.Close() == nil
	}
	return false
}

// writePortError writes err as the agent's JSON error with 502 Bad
// Gateway: the agent reached, the port not.
func writePortError(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadGateway)
	_ = json.NewEncoder(w).Encode(apiError{Code: errdefs.KindOf(err).Code(), Message: err.Error()})
}

// headerHasToken reports whether a comma-separated header of h contains
// token, case-insensitively.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
