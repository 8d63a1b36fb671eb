// Package nodelink is the one connection between a den agent and a den
// server: the agent dials out (mutual TLS, see internal/pki), and yamux
// multiplexes everything over it. Either end makes calls (a JSON request,
// a JSON answer) and opens byte streams (exec, files, proxied traffic),
// each on a yamux stream of its own, so a slow stream never blocks a call.
//
// A stream starts with a frame from the opener:
//
//	uint32 length (big endian) | {"k":"call"|"stream","m":method,"r":request}
//
// and the other end answers with one frame, {"r":answer} or
// {"e":{"code":...,"message":...}}. A call's stream then closes; a byte
// stream carries raw bytes both ways until either end closes it.
//
// Everything a peer sends is untrusted: frames are bounded (MaxFrame), an
// unknown method is NotFound, and a handler's panic is not caught here
// (handlers must not panic).
package nodelink

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/denhq/den/internal/errdefs"
)

// MaxFrame bounds one request or answer frame: calls carry records and
// small messages, bulk data goes over byte streams.
const MaxFrame = 16 << 20

// CallFunc answers a call; its ctx ends when the caller gives up or the
// session closes.
type CallFunc func(ctx context.Context, req json.RawMessage) (any, error)

// StreamFunc serves a byte stream: it calls s.Accept or s.Refuse, and
// after Accept owns the connection and closes it. ctx ends with the
// session.
type StreamFunc func(ctx context.Context, req json.RawMessage, s *Stream)

// Stream is a byte stream being opened on the receiving side: the handler
// calls Accept (the opener's Open returns the conn) or Refuse (it returns
// the error), then uses the connection.
type Stream struct {
	conn    net.Conn
	replied bool
}

// Accept answers the opener with ok and returns the connection.
func (s *Stream) Accept() (net.Conn, error) {
	s.replied = true
	if err := writeFrame(s.conn, answer{}); err != nil {
		s.conn.Close()
		return nil, err
	}
	return s.conn, nil
}

// Refuse answers the opener with err and closes the stream.
func (s *Stream) Refuse(err error) {
	s.replied = true
	writeFrame(s.conn, answer{E: wireErr(err)})
	s.conn.Close()
}

// Mux routes methods to handlers. Register handlers before the first
// session that uses it starts.
type Mux struct {
	calls   map[string]CallFunc
	streams map[string]StreamFunc
}

// NewMux returns an empty Mux.
func NewMux() *Mux {
	return &Mux{calls: map[string]CallFunc{}, streams: map[string]StreamFunc{}}
}

// HandleCall routes calls of method to fn.
func (m *Mux) HandleCall(method string, fn CallFunc) { m.calls[method] = fn }

// HandleStream routes byte streams of method to fn.
func (m *Mux) HandleStream(method string, fn StreamFunc) { m.streams[method] = fn }

// Session is one end of an agent's connection.
type Session struct {
	ys     *yamux.Session
	mux    *Mux
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Options tune a session.
type Options struct {
	// KeepAlive is the ping interval; the session closes when a ping
	// goes unanswered for ConnectionWriteTimeout. 0 means 5 s.
	KeepAlive time.Duration
	Logger    *slog.Logger
	// Context is the parent of every handler's context on this session:
	// it carries values such as the peer's identity (see WithPeer). Nil
	// means context.Background().
	Context context.Context
}

func (o Options) yamux() *yamux.Config {
	c := yamux.DefaultConfig()
	c.KeepAliveInterval = o.KeepAlive
	if c.KeepAliveInterval <= 0 {
		c.KeepAliveInterval = 5 * time.Second
	}
	c.ConnectionWriteTimeout = 2 * c.KeepAliveInterval
	c.MaxStreamWindowSize = 4 << 20 // file transfers and exec output at full speed
	c.AcceptBacklog = 1024
	c.StreamOpenTimeout = 30 * time.Second
	c.StreamCloseTimeout = 30 * time.Second
	c.LogOutput = io.Discard
	return c
}

// Client starts the agent's end over conn (the agent dialled it).
func Client(conn net.Conn, mux *Mux, o Options) (*Session, error) {
	ys, err := yamux.Client(newBatchConn(conn), o.yamux())
	if err != nil {
		return nil, err
	}
	return start(ys, mux, o), nil
}

// Server starts the server's end over conn (the agent's connection).
func Server(conn net.Conn, mux *Mux, o Options) (*Session, error) {
	ys, err := yamux.Server(newBatchConn(conn), o.yamux())
	if err != nil {
		return nil, err
	}
	return start(ys, mux, o), nil
}

func start(ys *yamux.Session, mux *Mux, o Options) *Session {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	parent := o.Context
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancel(parent)
	s := &Session{ys: ys, mux: mux, log: o.Logger, ctx: ctx, cancel: cancel}
	s.wg.Add(1)
	go s.accept()
	return s
}

// Done is closed when the session has ended (either end closed it, or
// the connection failed).
func (s *Session) Done() <-chan struct{} { return s.ys.CloseChan() }

// Close ends the session and every stream on it, and waits for the
// handlers' accept loop.
func (s *Session) Close() error {
	err := s.ys.Close()
	s.cancel()
	s.wg.Wait()
	return err
}

// RemoteAddr is the peer's address.
func (s *Session) RemoteAddr() net.Addr { return s.ys.RemoteAddr() }

// header is a stream's first frame.
type header struct {
	K string          `json:"k"`
	M string          `json:"m"`
	R json.RawMessage `json:"r,omitempty"`
}

// answer is the reply frame.
type answer struct {
	R json.RawMessage `json:"r,omitempty"`
	E *wireError      `json:"e,omitempty"`
}

type wireError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func wireErr(err error) *wireError {
	if err == nil {
		return nil
	}
	return &wireError{Code: errdefs.KindOf(err).Code(), Message: err.Error()}
}

func (e *wireError) err() error {
	k, _ := errdefs.KindOfCode(e.Code) // an unknown code is Internal
	return errdefs.New(k, "%s", e.Message)
}

// Call sends req to method and decodes the answer into resp (nil: drop
// it). A refusal comes back with its errdefs kind; a broken session is
// Unavailable.
func (s *Session) Call(ctx context.Context, method string, req, resp any) error {
	st, a, err := s.open(ctx, "call", method, req)
	if err != nil {
		return err
	}
	st.Close()
	if a.E != nil {
		return a.E.err()
	}
	if resp == nil || len(a.R) == 0 {
		return nil
	}
	if err := json.Unmarshal(a.R, resp); err != nil {
		return errdefs.Wrap(errdefs.Internal, err, "%s: decode the answer", method)
	}
	return nil
}

// Open opens a byte stream to method. The returned conn is the stream
// once the other end accepted it; close it when done.
func (s *Session) Open(ctx context.Context, method string, req any) (net.Conn, error) {
	st, a, err := s.open(ctx, "stream", method, req)
	if err != nil {
		return nil, err
	}
	if a.E != nil {
		st.Close()
		return nil, a.E.err()
	}
	return st, nil
}

func (s *Session) open(ctx context.Context, kind, method string, req any) (net.Conn, answer, error) {
	raw, err := json.Marshal(req)
	if err != nil {
		return nil, answer{}, errdefs.Wrap(errdefs.InvalidArgument, err, "%s: encode the request", method)
	}
	st, err := s.ys.OpenStream()
	if err != nil {
		return nil, answer{}, errdefs.Wrap(errdefs.Unavailable, err, "%s: the node link is down", method)
	}
	// Until the answer arrives, ctx's end closes the stream, which both
	// wakes the read below and cancels the handler on the other end.
	stop := context.AfterFunc(ctx, func() { st.Close() })
	var a answer
	err = writeFrame(st, header{K: kind, M: method, R: raw})
	if err == nil {
		err = readFrame(st, &a)
	}
	if !stop() {
		st.Close()
		return nil, answer{}, fmt.Errorf("%s: %w", method, ctx.Err())
	}
	if err != nil {
		st.Close()
		if errdefs.Is(err, errdefs.TooLarge) {
			return nil, answer{}, fmt.Errorf("%s: %w", method, err)
		}
		return nil, answer{}, errdefs.Wrap(errdefs.Unavailable, err, "%s: the node link failed", method)
	}
	return st, a, nil
}

func (s *Session) accept() {
	defer s.wg.Done()
	for {
		st, err := s.ys.AcceptStream()
		if err != nil {
			s.cancel()
			return
		}
		go s.serve(st)
	}
}

func (s *Session) serve(st *yamux.Stream) {
	st.SetReadDeadline(time.Now().Add(30 * time.Second)) // the header comes at once
	var h header
	if err := readFrame(st, &h); err != nil {
		st.Close()
		return
	}
	st.SetReadDeadline(time.Time{})
	switch h.K {
	case "call":
		fn, ok := s.mux.calls[h.M]
		if !ok {
			writeFrame(st, answer{E: wireErr(errdefs.New(errdefs.NotFound, "no call %q on this end of the node link", h.M))})
			st.Close()
			return
		}
		ctx, cancel := context.WithCancel(s.ctx)
		// The caller sends nothing more; its close (it gave up) ends
		// the read and cancels the handler.
		go func() {
			io.Copy(io.Discard, st)
			cancel()
		}()
		resp, err := fn(ctx, h.R)
		var a answer
		if err != nil {
			a.E = wireErr(err)
		} else if a.R, err = json.Marshal(resp); err != nil {
			a = answer{E: wireErr(errdefs.Wrap(errdefs.Internal, err, "%s: encode the answer", h.M))}
		}
		writeFrame(st, a)
		st.Close()
		cancel()
	case "stream":
		fn, ok := s.mux.streams[h.M]
		if !ok {
			writeFrame(st, answer{E: wireErr(errdefs.New(errdefs.NotFound, "no stream %q on this end of the node link", h.M))})
			st.Close()
			return
		}
		sr := &Stream{conn: st}
		fn(s.ctx, h.R, sr)
		if !sr.replied {
			sr.Refuse(errdefs.New(errdefs.Internal, "%s: the handler neither accepted nor refused the stream", h.M))
		}
	default:
		st.Close()
	}
}

func writeFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > MaxFrame {
		return errdefs.New(errdefs.TooLarge, "a node link frame of %d bytes is over the %d byte limit", len(b), MaxFrame)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

func readFrame(r io.Reader, v any) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > MaxFrame {
		return errdefs.New(errdefs.TooLarge, "a node link frame of %d bytes is over the %d byte limit", size, MaxFrame)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	if splitFrame(b, v) {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "decode a node link frame")
	}
	return nil
}

type peerKey struct{}

// WithPeer returns ctx carrying the peer's ID (a node ID on the server's
// end): what a session's Options.Context holds so that handlers know who
// called.
func WithPeer(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, peerKey{}, id)
}

// Peer is the peer ID in ctx, "" when none.
func Peer(ctx context.Context) string {
	id, _ := ctx.Value(peerKey{}).(string)
	return id
}
