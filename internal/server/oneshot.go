package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
)

// oneShotTransport carries each request to a guest on a connection of its
// own, dialled for it and closed with its response: no connection pool,
// no reader and writer goroutines per connection, no idle timers. It is
// the guest proxies' transport on a cluster's servers, where a guest
// connection is a stream on a node link, opened with one message; on a
// node of its own, den keeps guest connections (http.Transport), since
// connecting to a sandbox's guest agent costs the sandbox more.
type oneShotTransport struct {
	dial      func(ctx context.Context) (net.Conn, error)
	maxHeader int64 // bounds the response's header bytes
}

// Buffers of one-shot connections: most requests and responses are a few
// hundred bytes; larger bodies pass the buffers by.
var (
	oneShotReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	oneShotWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

func (t *oneShotTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	conn, err := t.dial(req.Context())
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	// The request's end (the client left) ends the exchange.
	stop := context.AfterFunc(req.Context(), func() { conn.Close() })
	out := *req // RoundTrip must not change req
	out.Close = true
	// The body may stream while the response does (Connect streams):
	// it is written beside the reading of the response.
	wrote := make(chan error, 1)
	go func() {
		bw := oneShotWriters.Get().(*bufio.Writer)
		bw.Reset(conn)
		err := out.Write(bw)
		if err == nil {
			err = bw.Flush()
		}
		bw.Reset(nil)
		oneShotWriters.Put(bw)
		wrote <- err
	}()
	lim := &headerLimit{r: conn, n: t.maxHeader}
	br := oneShotReaders.Get().(*bufio.Reader)
	br.Reset(lim)
	resp, err := readFinalResponse(br, req)
	if err != nil {
		stop()
		conn.Close()
		br.Reset(nil)
		oneShotReaders.Put(br)
		// The writer may still wait on the client's body: not for it.
		select {
		case werr := <-wrote:
			if werr != nil && !errors.Is(werr, net.ErrClosed) {
				return nil, fmt.Errorf("send the request to the guest: %w", werr)
			}
		default:
		}
		if lim.n < 0 {
			return nil, fmt.Errorf("the guest's response headers exceed %d bytes", t.maxHeader)
		}
		return nil, fmt.Errorf("read the guest's response: %w", err)
	}
	lim.unbounded = true // the body is not bounded here
	c := &oneShotConn{conn: conn, br: br, stop: stop}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// An upgrade (GET /sftp): the connection is the body, both ways.
		resp.Body = &upgradedBody{Reader: br, c: c}
		return resp, nil
	}
	resp.Body = &oneShotBody{body: resp.Body, c: c}
	return resp, nil
}

// readFinalResponse reads the response to req, skipping informational
// (1xx) responses other than 101, as http.Transport does.
func readFinalResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	for {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols || resp.StatusCode < 100 {
			return resp, nil
		}
		resp.Body.Close()
	}
}

// headerLimit fails reads once more than n bytes have been read, until
// unbounded is set (the headers have been read).
type headerLimit struct {
	r         io.Reader
	n         int64
	unbounded bool
}

func (l *headerLimit) Read(p []byte) (int, error) {
	if !l.unbounded {
		if l.n <= 0 {
			l.n = -1
			return 0, errors.New("response headers too large")
		}
		if int64(len(p)) > l.n {
			p = p[:l.n]
		}
	}
	n, err := l.r.Read(p)
	if !l.unbounded {
		l.n -= int64(n)
	}
	return n, err
}

// oneShotConn is a one-shot connection and its reader.
type oneShotConn struct {
	once sync.Once
	conn net.Conn
	br   *bufio.Reader
	stop func() bool
}

// close closes the connection, which ends a read blocked on it.
func (c *oneShotConn) close() {
	c.once.Do(func() {
		c.stop()
		c.conn.Close()
	})
}

// oneShotBody is a response body that closes its connection when closed
// (the reverse proxy closes it at the response's end).
type oneShotBody struct {
	body io.ReadCloser
	c    *oneShotConn
	once sync.Once
}

func (b *oneShotBody) Read(p []byte) (int, error) { return b.body.Read(p) }

// Close closes the connection first: closing an HTTP body reads it to its
// end, which on a stream would wait for the guest. The body's Close
// returns once no read of it is under way, and only then is the buffer
// given back.
func (b *oneShotBody) Close() error {
	b.once.Do(func() {
		b.c.close()
		b.body.Close()
		b.c.br.Reset(nil)
		oneShotReaders.Put(b.c.br)
	})
	return nil
}

// upgradedBody is the connection of a 101 response, read through the
// buffer that holds what came after the headers (not given back: a read
// of it may be under way when it is closed).
type upgradedBody struct {
	io.Reader
	c *oneShotConn
}

func (u *upgradedBody) Write(p []byte) (int, error) { return u.c.conn.Write(p) }
func (u *upgradedBody) Close() error                { u.c.close(); return nil }
