package nodelink

import (
	"net"
	"sync"
	"time"
)

// maxBuffered bounds what batchConn holds before writers wait.
const maxBuffered = 1 << 20

// batchConn coalesces writes: yamux writes every frame header and body
// separately, one system call (and over TLS one record) each, which is
// most of a small call's cost. Writes go to a buffer that one goroutine
// flushes; while it is in a write, the next frames gather, so a busy link
// sends them in one write and an idle one adds no delay.
type batchConn struct {
	net.Conn
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	spare  []byte
	err    error // the first write error, returned to every later Write
	closed bool
	done   chan struct{} // closed when the flusher has returned
}

func newBatchConn(c net.Conn) *batchConn {
	b := &batchConn{Conn: c, done: make(chan struct{})}
	b.cond = sync.NewCond(&b.mu)
	go b.flush()
	return b
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.buf) >= maxBuffered && b.err == nil && !b.closed {
		b.cond.Wait()
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.closed {
		return 0, net.ErrClosed
	}
	b.buf = append(b.buf, p...)
	b.cond.Broadcast()
	return len(p), nil
}

func (b *batchConn) flush() {
	defer close(b.done)
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		for len(b.buf) == 0 && b.err == nil && !b.closed {
			b.cond.Wait()
		}
		if b.err != nil || len(b.buf) == 0 {
			return // failed, or closed with nothing left to send
		}
		out := b.buf
		b.buf = b.spare[:0]
		b.mu.Unlock()
		_, err := b.Conn.Write(out)
		b.mu.Lock()
		b.spare = out
		if err != nil {
			b.err = err
		}
		b.cond.Broadcast()
	}
}

// Close sends what is buffered (for at most closeFlush: a peer that
// reads nothing cannot hold it), then closes the connection.
func (b *batchConn) Close() error {
	b.mu.Lock()
	b.closed = true
	b.cond.Broadcast()
	b.mu.Unlock()
	select {
	case <-b.done:
	case <-time.After(closeFlush):
	}
	return b.Conn.Close()
}

// closeFlush bounds the flush of a closing connection.
const closeFlush = time.Second
