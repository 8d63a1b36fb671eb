// Package pipelisten is a net.Listener of in-memory pipes: the guest
// channel of in-process drivers (the fake, the simulator), whose guest
// agent is an http.Server in the same process.
package pipelisten

import (
	"context"
	"net"
	"sync"

	"github.com/denhq/den/internal/errdefs"
)

// Listener hands the far ends of the pipes Dial makes to Accept.
type Listener struct {
	name  string
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// New returns a listener whose address reads name.
func New(name string) *Listener {
	return &Listener{name: name, conns: make(chan net.Conn), done: make(chan struct{})}
}

// Dial hands one end of a new pipe to Accept and returns the other; once
// the listener is closed it fails Unavailable ("guest agent stopped").
func (l *Listener) Dial(ctx context.Context) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
	case <-ctx.Done():
	}
	client.Close()
	server.Close()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, errdefs.New(errdefs.Unavailable, "guest agent stopped")
}

// Hand gives conn, a connection from elsewhere, to Accept as if it had
// been dialled; once the listener is closed it closes conn.
func (l *Listener) Hand(conn net.Conn) {
	select {
	case l.conns <- conn:
	case <-l.done:
		conn.Close()
	}
}

// Accept waits for a Dial.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept and Dial.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr names the listener.
func (l *Listener) Addr() net.Addr { return addr(l.name) }

type addr string

func (addr) Network() string  { return "pipe" }
func (a addr) String() string { return string(a) }
