package server

import (
	"io"
	"net/http"
	"sync"
	"time"
)

// Over HTTP/2 a client may finish sending its request (END_STREAM) after
// the response is complete: a Connect stream's client sends the request
// message, and its end of the stream a moment later, while the process it
// started may already have run and ended. When a handler returns before
// that, the server ends the stream with RST_STREAM(NO_ERROR) (RFC 9113
// §8.1). The RFC says clients must keep the response; httpx (httpcore) does
// not, and fails the call (LocalProtocolError). So the guest proxy waits,
// briefly, for the request's end before it returns.

const (
	// requestEndWait bounds how long a finished HTTP/2 response waits for
	// the end of its request.
	requestEndWait = 2 * time.Second
	// requestEndDrainMax bounds what is read of a request after its
	// response (as net/http does for HTTP/1.1 keep-alive).
	requestEndDrainMax = 256 << 10
)

// requestEnd is an HTTP/2 request body that a proxy reads and whose end
// the handler waits for. Reads are serialised: after the proxy returns, its
// transport may still be reading, and the handler then waits for that read
// instead of reading beside it. Close does not close the request body:
// net/http does, once the handler returns.
type requestEnd struct {
	mu   sync.Mutex
	body io.ReadCloser
	done bool // a read returned an error (io.EOF at the request's end)
}

func (b *requestEnd) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return 0, io.EOF
	}
	n, err := b.body.Read(p)
	if err != nil {
		b.done = true
	}
	return n, err
}

func (b *requestEnd) Close() error { return nil }

// wait reads what is left of the request, up to requestEndDrainMax and
// until requestEndWait from now (the read deadline of w's stream).
func (b *requestEnd) wait(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(requestEndWait))
	_, _ = io.Copy(io.Discard, io.LimitReader(b, requestEndDrainMax))
}

// serveWaitingForRequestEnd serves r with h and, for an HTTP/2 request
// with a body, waits for the request's end before returning.
func serveWaitingForRequestEnd(h http.Handler, w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 || r.Body == nil || r.Body == http.NoBody {
		h.ServeHTTP(w, r)
		return
	}
	body := &requestEnd{body: r.Body}
	r.Body = body
	h.ServeHTTP(w, r)
	body.wait(w)
}
