package server

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/denhq/den/api/rest"
)

// A Connect server stream from the guest agent (a process's output) ends
// with an end-stream message. When the sandbox dies under it (killed for
// memory, crashed) the stream just breaks, and a client would report a
// truncated envelope. The proxy instead passes whole messages only and,
// when the guest's stream breaks, ends the client's stream itself with an
// error that says what happened to the sandbox.

const (
	connectFlagEndStream = 0x02
	// connectMaxMessage bounds one message read from the guest (the
	// agent sends output in chunks of at most a few tens of KiB).
	connectMaxMessage = 16 << 20
	// lostStreamWait bounds how long the proxy waits for the node to
	// record why a sandbox whose stream broke stopped.
	lostStreamWait = 3 * time.Second
	// drainMax bounds what the proxy reads after a stream's end-stream
	// message to keep the guest connection for the next request.
	drainMax = 4 << 10
)

// isConnectStream reports whether a response is a Connect streaming body.
func isConnectStream(h http.Header) bool {
	return strings.HasPrefix(h.Get("Content-Type"), "application/connect+")
}

// connectStreamGuard reads a Connect stream message by message and, when
// the stream breaks before its end-stream message, ends it with an
// "unavailable" error whose message lost gives.
type connectStreamGuard struct {
	body  io.ReadCloser
	lost  func() string
	out   []byte // bytes of whole messages not yet returned
	ended bool   // the end-stream message was passed, or written here
	err   error  // returned once out is drained
}

func (g *connectStreamGuard) Read(p []byte) (int, error) {
	for len(g.out) == 0 && g.err == nil {
		g.next()
	}
	if len(g.out) > 0 {
		n := copy(p, g.out)
		g.out = g.out[n:]
		return n, nil
	}
	return 0, g.err
}

// next reads one whole message into out, or settles err.
func (g *connectStreamGuard) next() {
	if g.ended {
		g.drain()
		g.err = io.EOF
		return
	}
	var hdr [5]byte
	if _, err := io.ReadFull(g.body, hdr[:]); err != nil {
		g.broken()
		return
	}
	size := binary.BigEndian.Uint32(hdr[1:])
	if size > connectMaxMessage {
		g.broken()
		return
	}
	msg := make([]byte, 5+int(size))
	copy(msg, hdr[:])
	if _, err := io.ReadFull(g.body, msg[5:]); err != nil {
		g.broken()
		return
	}
	g.out = msg
	g.ended = hdr[0]&connectFlagEndStream != 0
}

// broken ends the stream with an end-stream error message.
func (g *connectStreamGuard) broken() {
	var end struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	end.Error.Code = "unavailable"
	end.Error.Message = g.lost()
	payload, _ := json.Marshal(end)
	msg := make([]byte, 5, 5+len(payload))
	msg[0] = connectFlagEndStream
	binary.BigEndian.PutUint32(msg[1:], uint32(len(payload)))
	g.out = append(msg, payload...)
	g.ended = true
}

// drain reads what follows the end-stream message, normally nothing but
// the end of the HTTP body, once the client has the whole stream: a body
// closed before its end takes its connection with it, and the next
// request would dial the guest again (a connection into the sandbox costs
// a few milliseconds there). A guest that sends more than drainMax, or
// keeps the body open, has its connection closed as before; the request's
// context bounds the wait.
func (g *connectStreamGuard) drain() {
	_, _ = io.Copy(io.Discard, io.LimitReader(g.body, drainMax))
}

func (g *connectStreamGuard) Close() error { return g.body.Close() }

// lostSandboxReason says why the guest stream of sandbox id broke: the
// reason the node recorded when the sandbox stopped, waiting briefly for
// it, else that the connection was lost.
func (s *Server) lostSandboxReason(ctx context.Context, id string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lostStreamWait)
	defer cancel()
	for {
		sb, err := s.cfg.Store.Snapshot().Sandbox(id)
		if err != nil {
			return "sandbox " + id + " was deleted while the stream was open"
		}
		if sb.State != rest.StateRunning {
			msg := "sandbox " + id + " stopped while the stream was open (state " + sb.State + ")"
			if sb.Reason != "" {
				msg += ": " + sb.Reason
			}
			return msg
		}
		select {
		case <-ctx.Done():
			return "the connection to sandbox " + id + "'s guest agent was lost; the sandbox is still running"
		case <-time.After(100 * time.Millisecond):
		}
	}
}
