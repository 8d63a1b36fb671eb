package server

import (
	"context"
	"net"
	"sync"

	"github.com/denhq/den/internal/errdefs"
)

// DefaultMaxPortConns is how many tunnels to its ports one sandbox has
// open at once unless Config.MaxPortConns says otherwise. Each holds a
// guest stream (a host descriptor) and a connection inside the sandbox;
// requests over the limit wait for a free tunnel, so a burst of 10,000
// connections costs 10,000 client sockets, not 30,000 descriptors, and
// does not flood the sandbox's server.
const DefaultMaxPortConns = 256

// portSlots bounds the open port tunnels of each sandbox.
type portSlots struct {
	mu   sync.Mutex
	size int
	m    map[string]chan struct{}
}

func (p *portSlots) sem(id string) chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]chan struct{}{}
	}
	c := p.m[id]
	if c == nil {
		c = make(chan struct{}, p.size)
		p.m[id] = c
	}
	return c
}

// forget drops sandbox id's semaphore; tunnels still open release into
// the old one.
func (p *portSlots) forget(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, id)
}

// acquire waits for a free tunnel of sandbox id, or for ctx to end.
func (p *portSlots) acquire(ctx context.Context, id string) (release func(), err error) {
	c := p.sem(id)
	select {
	case c <- struct{}{}:
	case <-ctx.Done():
		return nil, errdefs.Wrap(errdefs.Canceled, ctx.Err(), "wait for a free connection to sandbox %s (%d in use)", id, cap(c))
	}
	var once sync.Once
	return func() { once.Do(func() { <-c }) }, nil
}

// slotConn releases its tunnel slot when closed.
type slotConn struct {
	net.Conn
	release func()
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}
