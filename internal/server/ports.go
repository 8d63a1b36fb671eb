package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/guest"
)

// Ports as URLs: PortProxy forwards HTTP to a server listening on a port
// inside a sandbox. Every upstream connection is a tunnel through the
// node's guest channel: a DialGuest stream on which the guest agent
// answered GET /ports/{port} with 101 (see internal/guest/ports.go). The
// host never connects to the sandbox's IP, so this works without a
// sandbox network and for microVMs reached over virtio-serial.
//
// Upstream connections are not kept alive: each request (or WebSocket)
// has its own guest stream and its own connection to the port. A pool
// would need one per sandbox and port, and forgetting on every stop,
// suspend and checkpoint, for the saving of one loopback connect.

// portHandshakeTimeout bounds the upgrade exchange with the guest agent,
// which dials the sandbox's loopback and answers at once.
const portHandshakeTimeout = 15 * time.Second

// portErrorBodyLimit bounds the error body of the agent read into a
// message.
const portErrorBodyLimit = 64 << 10

// maxSandboxResponseHeader bounds the response headers of a sandbox's
// servers (through its ports) and of its guest agent (through the envd
// proxy), as den's listeners bound request headers: the sandbox is
// untrusted, and Go's default (10 MiB) times the open tunnels would be
// gigabytes.
const maxSandboxResponseHeader = 1 << 20

// PortProxy is the reverse proxy to the server listening on port inside
// sandbox id. It forwards a request unchanged (path, Host, headers) but
// for the traffic plane's credentials (X-Access-Token,
// E2b-Traffic-Access-Token) and adds X-Forwarded-For/-Host/-Proto.
// Responses stream unbuffered (server-sent events flow); WebSocket and
// other upgrades pass through. When nothing listens on the port it
// answers 502 Bad Gateway with the agent's message; when the guest agent
// cannot be reached, as GuestProxy does. The caller has authorised the
// request and checked that the sandbox runs. The sandbox counts as active
// for as long as the request lasts.
func (s *Server) PortProxy(id string, port int) http.Handler {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		release, err := s.ports.acquire(ctx, id)
		if err != nil {
			return nil, err
		}
		conn, err := s.dialPort(ctx, id, port)
		if err != nil {
			release()
			return nil, err
		}
		return &slotConn{Conn: conn, release: release}, nil
	}
	h1 := &http.Transport{DialContext: dial, DisableKeepAlives: true, DisableCompression: true, MaxResponseHeaderBytes: maxSandboxResponseHeader}
	// gRPC needs HTTP/2 end to end (trailers, bidirectional streams): a
	// gRPC request that came over HTTP/2 goes on over cleartext HTTP/2
	// (prior knowledge, as gRPC servers accept it).
	h2 := &http.Transport{DialContext: dial, DisableCompression: true, Protocols: new(http.Protocols), MaxResponseHeaderBytes: maxSandboxResponseHeader}
	h2.Protocols.SetUnencryptedHTTP2(true)
	p := s.portReverseProxy(id, port, h1)
	p2 := s.portReverseProxy(id, port, h2)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.activity.begin(id, s.cfg.Now())
		defer func() { s.activity.end(id, s.cfg.Now()) }()
		// A server in the sandbox may answer before it has read the
		// whole request body (as Connect streams do).
		_ = http.NewResponseController(w).EnableFullDuplex()
		if isGRPC(r) {
			defer h2.CloseIdleConnections()
			p2.ServeHTTP(w, r)
			return
		}
		p.ServeHTTP(w, r)
	})
}

// isGRPC reports whether r is a gRPC call over HTTP/2.
func isGRPC(r *http.Request) bool {
	return r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
}

// portReverseProxy is the reverse proxy of PortProxy over tr.
func (s *Server) portReverseProxy(id string, port int, tr http.RoundTripper) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Transport:     tr,
		BufferPool:    ProxyBuffers,
		FlushInterval: -1,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", fmt.Sprintf("sandbox-port:%d", port)
			pr.SetXForwarded()
			pr.Out.Header.Del("X-Access-Token")
			pr.Out.Header.Del("E2b-Traffic-Access-Token")
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return
			}
			var pe *portError
			if errors.As(err, &pe) {
				writeJSON(w, http.StatusBadGateway, rest.Error{Code: pe.code, Message: pe.msg})
				return
			}
			if strings.Contains(err.Error(), "server response headers exceeded") { // net/http has no sentinel
				writeJSON(w, http.StatusBadGateway, rest.Error{Code: errdefs.Unavailable.Code(), Message: fmt.Sprintf(
					"the server on port %d in sandbox %s answered with more than %d bytes of headers", port, id, maxSandboxResponseHeader)})
				return
			}
			writeError(w, errdefs.Wrap(errdefs.Unavailable, err, "sandbox %s: guest agent unreachable", id))
		},
	}
}

// portError is the guest agent's refusal to open a tunnel, with its
// message: nothing listens on the port, or the port is invalid.
type portError struct{ code, msg string }

func (e *portError) Error() string { return e.msg }

// dialPort opens a guest stream to sandbox id and upgrades it to a tunnel
// to port. The returned connection starts with the port's bytes.
func (s *Server) dialPort(ctx context.Context, id string, port int) (net.Conn, error) {
	conn, err := s.cfg.Node.DialGuest(ctx, id)
	if err != nil {
		return nil, err
	}
	br, err := upgradePort(ctx, conn, port)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if br.Buffered() == 0 {
		return conn, nil
	}
	return &bufferedConn{Conn: conn, r: br}, nil
}

// upgradePort sends GET /ports/{port} as an upgrade on conn and reads the
// answer: a reader of what follows a 101, else the agent's error.
func upgradePort(ctx context.Context, conn net.Conn, port int) (*bufio.Reader, error) {
	deadline := time.Now().Add(portHandshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	req := fmt.Sprintf("GET /ports/%d HTTP/1.1\r\nHost: guest\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", port, guest.PortUpgrade)
	if _, err := io.WriteString(conn, req); err != nil {
		return nil, fmt.Errorf("open a tunnel to port %d: %w", port, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, fmt.Errorf("open a tunnel to port %d: %w", port, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		return nil, agentPortError(resp, port)
	}
	if !stop() {
		return nil, fmt.Errorf("open a tunnel to port %d: %w", port, ctx.Err())
	}
	_ = conn.SetDeadline(time.Time{})
	return br, nil
}

// agentPortError turns the agent's answer other than 101 into an error
// with its {"code","message"}.
func agentPortError(resp *http.Response, port int) error {
	var body rest.Error
	data, _ := io.ReadAll(io.LimitReader(resp.Body, portErrorBodyLimit))
	if json.Unmarshal(data, &body) != nil || body.Message == "" {
		// An agent older than GET /ports answers 404 or 405 in plain text.
		return &portError{code: errdefs.Unsupported.Code(), msg: fmt.Sprintf("port %d: the guest agent answered %s: it cannot forward ports", port, resp.Status)}
	}
	return &portError{code: body.Code, msg: body.Message}
}

// bufferedConn is a connection whose first bytes were read ahead into r.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
