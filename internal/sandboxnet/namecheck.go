package sandboxnet

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Name checks. A sandbox whose internet is off reaches the addresses of
// the names it may resolve, learned when den's resolver answers them.
// Many names share an address (virtual hosts, CDNs), so an address alone
// would let a sandbox reach any name served there. Its TCP connections to
// learned addresses on ports 80 and 443 are therefore sent (DNAT) to den's
// name check on the DNS address, which reads the name the connection is
// for (the HTTP Host header, the TLS server name), lets it through only
// when the policy allows that name and the resolver gave that address for
// it (or a CIDR rule allows the address), and then splices the
// connection to its original destination. A refused HTTP request gets a
// 403 naming the reason; a refused TLS connection is closed.

// checkPort is the name check's port on the DNS address.
const checkPort = 15080

// Bounds of the name check: how long a sandbox may take to send the
// name, how much it may send before it, how long the dial may take.
const (
	checkReadTimeout = 10 * time.Second
	checkMaxPrelude  = 64 << 10
	checkDialTimeout = 10 * time.Second
)

// nameChecked are the ports whose names are checked.
var nameChecked = []uint16{80, 443}

// nameCheck is the running name check.
type nameCheck struct {
	l     net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// startNameCheck listens on the DNS address's checkPort.
func (m *Manager) startNameCheck() (*nameCheck, error) {
	l, err := net.Listen("tcp4", net.JoinHostPort(m.DNS().String(), fmt.Sprint(checkPort)))
	if err != nil {
		return nil, fmt.Errorf("sandbox name check: %w", err)
	}
	nc := &nameCheck{l: l, conns: map[net.Conn]struct{}{}}
	nc.wg.Add(1)
	go func() {
		defer nc.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			nc.track(c, true)
			nc.wg.Add(1)
			go func() {
				defer nc.wg.Done()
				defer nc.track(c, false)
				m.checkConn(c)
			}()
		}
	}()
	return nc, nil
}

func (nc *nameCheck) track(c net.Conn, add bool) {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	if add {
		nc.conns[c] = struct{}{}
		return
	}
	delete(nc.conns, c)
	c.Close()
}

// close stops the name check and cuts the connections it carries.
func (nc *nameCheck) close() error {
	err := nc.l.Close()
	nc.mu.Lock()
	for c := range nc.conns {
		c.Close()
	}
	nc.mu.Unlock()
	nc.wg.Wait()
	return err
}

// checkConn checks and, when allowed, splices one sandbox connection.
func (m *Manager) checkConn(c net.Conn) {
	src, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return
	}
	dst, err := originalDst(c)
	if err != nil {
		m.log.Warn("name check: no original destination", "src", src, "err", err)
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(checkReadTimeout))
	var prelude bytes.Buffer
	r := io.TeeReader(io.LimitReader(c, checkMaxPrelude), &prelude)
	br := bufio.NewReader(r)
	first, err := br.Peek(1)
	if err != nil {
		return
	}
	isTLS := first[0] == 0x16 // a TLS handshake record
	var name string
	if isTLS {
		name = tlsServerName(br)
	} else {
		name = httpHost(br)
	}
	_ = c.SetReadDeadline(time.Time{})
	id, why := m.mayReach(src.Addr(), name, dst.Addr())
	if why != "" {
		m.log.Info("sandbox connection refused by name", "sandbox", id, "name", name, "dst", dst, "why", why)
		if !isTLS {
			msg := fmt.Sprintf("den: this sandbox may not reach %s: %s\n", dst, why)
			fmt.Fprintf(c, "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(msg), msg)
		}
		return
	}
	up, err := net.DialTimeout("tcp4", dst.String(), checkDialTimeout)
	if err != nil {
		return // the sandbox sees its connection close, as a refused dial
	}
	defer up.Close()
	if _, err := up.Write(prelude.Bytes()); err != nil {
		return
	}
	// The rest of c's bytes: what bufio read ahead is in the prelude.
	splice(c, up)
}

// splice copies both ways until both directions end.
func splice(a, b net.Conn) {
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(b, a)
		closeWrite(b)
		close(done)
	}()
	_, _ = io.Copy(a, b)
	closeWrite(a)
	<-done
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// mayReach decides whether the sandbox at src may reach dst for name: ""
// when it may, else why not; id is the sandbox's.
func (m *Manager) mayReach(src netip.Addr, name string, dst netip.Addr) (id, why string) {
	n, id, c, ok := m.client(src)
	if !ok {
		return "", "not a sandbox address"
	}
	for _, p := range c.allowNets {
		if p.Contains(dst) {
			return id, ""
		}
	}
	if name == "" {
		return id, "the connection names no host (an HTTP Host header or a TLS server name is needed)"
	}
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if !c.nameAllowed(name) {
		return id, fmt.Sprintf("its network policy does not allow %s", name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.slots[n]
	if !ok || s.id != id {
		return id, "the sandbox's network is gone"
	}
	if l, ok := s.learned[name]; ok && time.Now().Before(l.until) {
		for _, a := range l.addrs {
			if a == dst {
				return id, ""
			}
		}
	}
	return id, fmt.Sprintf("%s did not resolve to %s through den's resolver", name, dst)
}

// originalDst is where a DNAT'ed connection was going.
func originalDst(c net.Conn) (netip.AddrPort, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return netip.AddrPort{}, errors.New("not a TCP connection")
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var mreq *unix.IPv6Mreq
	var serr error
	if err := raw.Control(func(fd uintptr) {
		mreq, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.IPPROTO_IP, unix.SO_ORIGINAL_DST)
	}); err != nil {
		return netip.AddrPort{}, err
	}
	if serr != nil {
		return netip.AddrPort{}, serr
	}
	// A sockaddr_in: family (2 bytes), port (big endian), address.
	b := mreq.Multiaddr
	port := uint16(b[2])<<8 | uint16(b[3])
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]}), port), nil
}

// httpHost reads an HTTP request's head from r and returns its host name
// without the port; "" when it is not HTTP or names none.
func httpHost(r *bufio.Reader) string {
	req, err := http.ReadRequest(r)
	if err != nil {
		return ""
	}
	host := req.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return host
}

// tlsServerName reads a TLS ClientHello from r and returns its server
// name; "" when there is none. It never answers the client.
func tlsServerName(r io.Reader) string {
	var name string
	errSeen := errors.New("client hello read")
	_ = tls.Server(helloConn{r: r}, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		name = h.ServerName
		return nil, errSeen
	}}).Handshake()
	return name
}

// helloConn is a net.Conn that only reads from r: the TLS server that
// parses the ClientHello must not write to the sandbox.
type helloConn struct {
	net.Conn
	r io.Reader
}

func (c helloConn) Read(p []byte) (int, error)         { return c.r.Read(p) }
func (c helloConn) Write(p []byte) (int, error)        { return 0, io.ErrClosedPipe }
func (c helloConn) Close() error                       { return nil }
func (c helloConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c helloConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c helloConn) SetDeadline(t time.Time) error      { return nil }
func (c helloConn) SetReadDeadline(t time.Time) error  { return nil }
func (c helloConn) SetWriteDeadline(t time.Time) error { return nil }
