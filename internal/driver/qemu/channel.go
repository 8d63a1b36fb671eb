package qemu

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/guest"
)

// channel is the host end of a VM's agent channel: QEMU serves the
// guest's virtio-serial port on a unix socket, and the agent multiplexes
// its connections over the port with yamux (see guest's vport.go). One
// yamux session at a time, made on first use and again after it broke.
type channel struct {
	path string // QEMU's chardev socket

	mu   sync.Mutex
	sess *yamux.Session
}

// channelDialTimeout bounds a stream open when ctx has no deadline.
const channelDialTimeout = 10 * time.Second

// dial opens a stream to the agent: a net.Conn the agent's HTTP server
// serves.
func (c *channel) dial(ctx context.Context) (net.Conn, error) {
	for attempt := 0; ; attempt++ {
		sess, err := c.session(ctx)
		if err != nil {
			return nil, err
		}
		stream, err := c.open(ctx, sess)
		if err == nil {
			return stream, nil
		}
		c.reset(sess)
		if attempt == 1 || ctx.Err() != nil {
			return nil, errdefs.Wrap(errdefs.Unavailable, err, "dial the guest agent over %s", c.path)
		}
	}
}

// open opens a stream on sess, within ctx's deadline.
func (c *channel) open(ctx context.Context, sess *yamux.Session) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		s, err := sess.OpenStream()
		if err != nil {
			done <- result{nil, err} // not a nil *Stream in a non-nil net.Conn
			return
		}
		done <- result{s, nil}
	}()
	timeout := channelDialTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	select {
	case r := <-done:
		return r.conn, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, ctx.Err()
	case <-time.After(timeout):
		return nil, fmt.Errorf("open a stream: no answer within %s", timeout)
	}
}

// session returns the live session, connecting a new one when there is
// none.
func (c *channel) session(ctx context.Context) (*yamux.Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess != nil && !c.sess.IsClosed() {
		return c.sess, nil
	}
	conn, err := dialUnix(ctx, c.path)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.Unavailable, err, "connect to the agent channel %s", c.path)
	}
	sess, err := yamux.Client(conn, guest.YamuxConfig())
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("agent channel %s: %w", c.path, err)
	}
	c.sess = sess
	return sess, nil
}

// reset drops sess when it is still the current session.
func (c *channel) reset(sess *yamux.Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == sess {
		c.sess.Close()
		c.sess = nil
	}
}

// close ends the session.
func (c *channel) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess != nil {
		c.sess.Close()
		c.sess = nil
	}
}

// dialUnix connects to the unix socket at path through an O_PATH
// descriptor of it, so paths longer than a sockaddr_un holds work.
func dialUnix(ctx context.Context, path string) (net.Conn, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "unix", Err: err}
	}
	defer unix.Close(fd)
	var d net.Dialer
	return d.DialContext(ctx, "unix", fmt.Sprintf("/proc/self/fd/%d", fd))
}
