package server

import (
	"net/http"
	"sync"
	"time"
)

// guestFlushDelay is how long the guest proxy holds a streamed response's
// flush. A reverse proxy flushes a streamed response after every write:
// a short command's start, output and end events, which the guest sends
// back to back, then leave as three writes (three system calls here, three
// reads in the client). Held this long, they leave as one; a stream's last
// bytes are flushed the moment it ends.
const guestFlushDelay = time.Millisecond

// delayFlushes serves h with its flushes held up to delay: a flush asked
// for while one is pending is merged into it. What is pending when h
// returns is flushed then over HTTP/2, whose handler may yet wait for the
// request's end (serveWaitingForRequestEnd); over HTTP/1 the server
// writes it with the response's end, in one write.
func delayFlushes(h http.Handler, delay time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dw := &delayedFlusher{ResponseWriter: w, delay: delay}
		defer dw.finish(r.ProtoMajor >= 2)
		h.ServeHTTP(dw, r)
	})
}

// delayedFlusher is an http.ResponseWriter whose Flush happens up to delay
// later. Its mutex keeps the timer's flush apart from the handler's
// writes: a ResponseWriter is not safe for concurrent use.
type delayedFlusher struct {
	http.ResponseWriter
	delay time.Duration

	mu      sync.Mutex
	timer   *time.Timer
	pending bool // a flush is due when the timer fires
	done    bool // the handler has returned: no more flushes from here
}

func (d *delayedFlusher) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ResponseWriter.Write(p)
}

func (d *delayedFlusher) WriteHeader(code int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ResponseWriter.WriteHeader(code)
}

// FlushError schedules a flush (http.ResponseController finds it).
func (d *delayedFlusher) FlushError() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done || d.pending {
		return nil
	}
	d.pending = true
	if d.timer == nil {
		d.timer = time.AfterFunc(d.delay, d.flushNow)
	} else {
		d.timer.Reset(d.delay)
	}
	return nil
}

func (d *delayedFlusher) Flush() { _ = d.FlushError() }

// Unwrap lets http.ResponseController reach the writer's other controls
// (deadlines, full duplex, hijacking).
func (d *delayedFlusher) Unwrap() http.ResponseWriter { return d.ResponseWriter }

func (d *delayedFlusher) flushNow() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done || !d.pending {
		return
	}
	d.pending = false
	_ = http.NewResponseController(d.ResponseWriter).Flush()
}

// finish stops the timer and, with flush, flushes what is pending; the
// handler is returning.
func (d *delayedFlusher) finish(flush bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.done = true
	if d.timer != nil {
		d.timer.Stop()
	}
	if d.pending && flush {
		d.pending = false
		_ = http.NewResponseController(d.ResponseWriter).Flush()
	}
}
