package guest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// A microVM's agent channel is one virtio-serial port (a byte stream to a
// unix socket on the host), so the agent multiplexes its connections over
// it with yamux: the host opens a stream per connection and the agent
// accepts them as a listener. When the host side goes away (den restarts)
// the session ends; the listener opens the port again and waits for the
// next one.

// vportRetry is the pause between two sessions on a port.
const vportRetry = 20 * time.Millisecond

// vportDir lists the virtio-serial ports by kernel name; each has a
// "name" file with the name the host gave the port.
const vportDir = "/sys/class/virtio-ports"

// YamuxConfig is the yamux configuration of both ends of the channel.
func YamuxConfig() *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.EnableKeepAlive = true
	cfg.KeepAliveInterval = 15 * time.Second
	cfg.ConnectionWriteTimeout = 30 * time.Second
	cfg.MaxStreamWindowSize = 1 << 20
	return cfg
}

// vportListener accepts the streams of successive yamux sessions over one
// virtio-serial port.
type vportListener struct {
	name  string
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

func listenVport(name string) (net.Listener, error) {
	if name == "" || strings.ContainsAny(name, "/") {
		return nil, fmt.Errorf("vport name %q is invalid", name)
	}
	if _, err := findVport(name); err != nil {
		return nil, err
	}
	l := &vportListener{name: name, conns: make(chan net.Conn), done: make(chan struct{})}
	l.wg.Add(1)
	go l.run()
	return l, nil
}

// run serves one session after the other until Close.
func (l *vportListener) run() {
	defer l.wg.Done()
	for {
		select {
		case <-l.done:
			return
		default:
		}
		l.session()
		select {
		case <-l.done:
			return
		case <-time.After(vportRetry):
		}
	}
}

// session opens the port and hands the streams of one yamux session to
// Accept until the session ends.
func (l *vportListener) session() {
	dev, err := findVport(l.name)
	if err != nil {
		return
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return
	}
	sess, err := yamux.Server(f, YamuxConfig())
	if err != nil {
		f.Close()
		return
	}
	go func() { <-l.done; sess.Close() }()
	defer sess.Close()
	for {
		c, err := sess.Accept()
		if err != nil {
			return
		}
		select {
		case l.conns <- c:
		case <-l.done:
			c.Close()
			return
		}
	}
}

func (l *vportListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *vportListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *vportListener) Addr() net.Addr { return vportAddr(l.name) }

type vportAddr string

func (a vportAddr) Network() string { return "vport" }
func (a vportAddr) String() string  { return string(a) }

// findVport returns the device of the virtio-serial port the host named
// name.
func findVport(name string) (string, error) {
	entries, err := os.ReadDir(vportDir)
	if err != nil {
		return "", fmt.Errorf("find vport %s: %w", name, err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(vportDir, e.Name(), "name"))
		if err == nil && strings.TrimSpace(string(data)) == name {
			return filepath.Join("/dev", e.Name()), nil
		}
	}
	return "", fmt.Errorf("find vport %s: %w", name, errors.New("no virtio-serial port of that name"))
}
