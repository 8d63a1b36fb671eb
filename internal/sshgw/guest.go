package sshgw

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"github.com/denhq/den/api/envd/process/processconnect"
)

// guestClient talks to one sandbox's guest agent: the envd process
// service over an HTTP client whose connections are guest streams, and
// upgrades (SFTP, port tunnels, listeners) on streams of their own.
type guestClient struct {
	id      string
	dial    func(ctx context.Context, id string) (net.Conn, error)
	http    *http.Client
	process processconnect.ProcessClient
}

func newGuestClient(b Backend, id string) *guestClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return b.DialGuest(ctx, id)
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	hc := &http.Client{Transport: tr}
	return &guestClient{id: id, dial: b.DialGuest, http: hc,
		process: processconnect.NewProcessClient(hc, "http://guest", connect.WithReadMaxBytes(maxGuestMessage))}
}

// close drops the client's idle connections.
func (gc *guestClient) close() { gc.http.CloseIdleConnections() }

// maxGuestMessage bounds one message of the guest's process stream (the
// agent sends output in chunks of at most tens of KiB): a sandbox cannot
// make the gateway buffer more.
const maxGuestMessage = 4 << 20

// maxUpgradeResponse bounds the agent's answer to an upgrade (status line
// and headers).
const maxUpgradeResponse = 64 << 10

// upgradeTimeout bounds an upgrade exchange with the guest agent.
const upgradeTimeout = 15 * time.Second

// maxAgentError bounds the error body of the agent read into a message.
const maxAgentError = 16 << 10

// upgrade opens a guest stream and sends GET path as an upgrade to proto.
// It returns the stream (its reads start after the 101) and the
// response's headers; else the agent's error message.
func (gc *guestClient) upgrade(ctx context.Context, path, proto string) (net.Conn, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, upgradeTimeout)
	defer cancel()
	conn, err := gc.dial(ctx, gc.id)
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: guest\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", path, proto)
	// The answer is read through a limit that is lifted once it is read:
	// the stream that follows is unbounded.
	lr := &io.LimitedReader{R: conn, N: maxUpgradeResponse}
	br := bufio.NewReader(lr)
	var resp *http.Response
	if _, err = io.WriteString(conn, req); err == nil {
		resp, err = http.ReadResponse(br, nil)
	}
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("guest agent %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer conn.Close()
		return nil, nil, agentError(resp)
	}
	if !stop() {
		conn.Close()
		return nil, nil, fmt.Errorf("guest agent %s: %w", path, ctx.Err())
	}
	_ = conn.SetDeadline(time.Time{})
	lr.N = math.MaxInt64
	if br.Buffered() > 0 {
		return &bufferedConn{Conn: conn, r: br}, resp.Header, nil
	}
	return conn, resp.Header, nil
}

// agentError is the agent's {"code","message"} answer as an error.
func agentError(resp *http.Response) error {
	var body struct{ Code, Message string }
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxAgentError))
	if json.Unmarshal(data, &body) != nil || body.Message == "" {
		return fmt.Errorf("the guest agent answered %s", resp.Status)
	}
	return fmt.Errorf("%s", body.Message)
}

// bufferedConn is a connection whose first bytes were read ahead into r.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite half-closes the underlying connection where it can.
func (c *bufferedConn) CloseWrite() error { return closeWrite(c.Conn) }

// closeWrite half-closes c when it supports it, else closes it.
func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
