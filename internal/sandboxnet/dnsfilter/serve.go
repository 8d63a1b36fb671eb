package dnsfilter

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// Serve answers queries on pc (UDP) until Close, and then returns nil. It
// returns an error when reading from pc fails for another reason. Queries
// answered locally are answered in order; forwarded ones each get a
// goroutine, at most maxInFlight at once over the whole server.
func (s *Server) Serve(pc net.PacketConn) error {
	if !s.trackLoop(pc, nil) {
		return nil
	}
	defer s.untrackLoop(pc, nil)
	// ctx abandons this loop's forwarded queries once the loop ends.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// One byte over the cap, so that an oversized datagram is seen as such
	// rather than read cut short.
	buf := make([]byte, maxQuerySize+1)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if s.isClosed() {
				return nil
			}
			return fmt.Errorf("read dns query: %w", err)
		}
		if n > maxQuerySize {
			continue
		}
		s.serveDatagram(ctx, pc, addr, buf[:n])
	}
}

// serveDatagram answers one UDP query, now when it is answered locally, or
// from a new goroutine when it is forwarded. b is only borrowed.
// Preconditions: the calling Serve loop is counted in wg.
func (s *Server) serveDatagram(ctx context.Context, pc net.PacketConn, addr net.Addr, b []byte) {
	src, ok := addrOf(addr)
	if !ok {
		return
	}
	q, ok := s.screen(src, b)
	if !ok {
		return
	}
	if q.reply != nil {
		s.writeDatagram(pc, addr, q.req, q.reply)
		return
	}
	select {
	case s.inflight <- struct{}{}:
	default:
		s.log.Debug("dns query dropped: too many in flight", "src", src)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.inflight }()
		if reply := s.forward(ctx, q); reply != nil {
			s.writeDatagram(pc, addr, q.req, reply)
		}
	}()
}

func (s *Server) writeDatagram(pc net.PacketConn, addr net.Addr, req, reply *dns.Msg) {
	b := s.pack(req, reply, udpLimit(req))
	if b == nil {
		return
	}
	if _, err := pc.WriteTo(b, addr); err != nil {
		s.log.Debug("dns reply not sent", "err", err)
	}
}

// ServeTCP answers queries on l (DNS over TCP: a 2-byte length prefix,
// several queries per connection, closed after tcpIdleTimeout without one)
// until Close, and then returns nil. It returns an error when l is closed by
// someone else.
func (s *Server) ServeTCP(l net.Listener) error {
	if !s.trackLoop(nil, l) {
		return nil
	}
	defer s.untrackLoop(nil, l)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept dns connection: %w", err)
			}
			// Out of file descriptors and the like: wait for it to pass
			// rather than stop resolving for every sandbox.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept dns connection failed", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-s.done:
			}
			continue
		}
		backoff = 0
		if !s.trackConn(c) {
			continue
		}
		go s.serveConn(ctx, c)
	}
}

// serveConn answers the queries on one TCP connection, one at a time, until
// the client closes it, idles, or sends something that is not a query.
func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	defer s.untrackConn(c)
	src, ok := addrOf(c.RemoteAddr())
	if !ok {
		return
	}
	for {
		b, err := readTCPMsg(c)
		if err != nil {
			return
		}
		q, ok := s.screen(src, b)
		if !ok {
			continue
		}
		reply := q.reply
		if reply == nil {
			select {
			case s.inflight <- struct{}{}:
			default:
				s.log.Debug("dns query dropped: too many in flight", "src", src)
				return
			}
			reply = s.forward(ctx, q)
			<-s.inflight
			if reply == nil {
				return
			}
		}
		out := s.pack(q.req, reply, dns.MaxMsgSize)
		if out == nil {
			continue
		}
		if err := writeTCPMsg(c, out); err != nil {
			return
		}
	}
}

// readTCPMsg reads one length-prefixed message, which must arrive whole
// within tcpIdleTimeout.
func readTCPMsg(c net.Conn) ([]byte, error) {
	if err := c.SetReadDeadline(time.Now().Add(tcpIdleTimeout)); err != nil {
		return nil, err
	}
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if n < headerSize || n > maxQuerySize {
		return nil, fmt.Errorf("dns message of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		return nil, err
	}
	return b, nil
}

func writeTCPMsg(c net.Conn, msg []byte) error {
	if err := c.SetWriteDeadline(time.Now().Add(tcpIdleTimeout)); err != nil {
		return err
	}
	b := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(b, uint16(len(msg)))
	copy(b[2:], msg)
	_, err := c.Write(b)
	return err
}

// addrOf returns the IP address of a UDP or TCP peer, with IPv4-mapped IPv6
// addresses unmapped, so that a dual-stack socket reports sandboxes the way
// Config.Client knows them.
func addrOf(a net.Addr) (netip.Addr, bool) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		if a == nil {
			return netip.Addr{}, false
		}
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return netip.Addr{}, false
		}
	}
	ip := ap.Addr().Unmap()
	return ip, ip.IsValid()
}
