package sandboxnet

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/denhq/den/internal/sandboxnet/dnsfilter"
)

// StartDNS starts den's resolver on the DNS address, port 53, UDP and
// TCP: it answers each sandbox by its policy (see the package comment) and
// asks upstreams (host:port; nil: the host's /etc/resolv.conf) the rest.
// It also starts the name check of connections to learned addresses
// (namecheck.go). Close stops both.
func (m *Manager) StartDNS(upstreams []string) error {
	if len(upstreams) == 0 {
		var err error
		if upstreams, err = hostResolvers("/etc/resolv.conf"); err != nil {
			return fmt.Errorf("sandbox DNS: %w", err)
		}
	}
	srv, err := dnsfilter.New(dnsfilter.Config{Upstreams: upstreams, Client: m.dnsClient, Logger: m.log})
	if err != nil {
		return fmt.Errorf("sandbox DNS: %w", err)
	}
	addr := net.JoinHostPort(m.DNS().String(), "53")
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return fmt.Errorf("sandbox DNS: %w", err)
	}
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		pc.Close()
		return fmt.Errorf("sandbox DNS: %w", err)
	}
	check, err := m.startNameCheck()
	if err != nil {
		pc.Close()
		l.Close()
		return err
	}
	m.mu.Lock()
	m.resolver, m.check = srv, check
	m.mu.Unlock()
	go func() {
		if err := srv.Serve(pc); err != nil {
			m.log.Error("sandbox DNS over UDP stopped", "err", err)
		}
	}()
	go func() {
		if err := srv.ServeTCP(l); err != nil {
			m.log.Error("sandbox DNS over TCP stopped", "err", err)
		}
	}()
	return nil
}

// Close stops the resolver. Networks and their rules stay (sandboxes
// outlive den); when none is left, so that a den that stops cleanly leaves
// nothing behind, it also removes the table and the DNS address, which
// the next Open makes again.
func (m *Manager) Close() error {
	m.mu.Lock()
	srv, check := m.resolver, m.check
	m.resolver, m.check = nil, nil
	empty := len(m.ids) == 0
	m.mu.Unlock()
	var errs []error
	if srv != nil {
		errs = append(errs, srv.Close())
	}
	if check != nil {
		errs = append(errs, check.close())
	}
	if empty {
		errs = append(errs, m.removeHost())
	}
	return errors.Join(errs...)
}

// dnsClient is the resolver's view of the sandbox at src.
func (m *Manager) dnsClient(src netip.Addr) (dnsfilter.Client, bool) {
	n, id, c, ok := m.client(src.Unmap())
	if !ok {
		return dnsfilter.Client{}, false
	}
	cl := dnsfilter.Client{Allowed: c.nameAllowed}
	if c.learns() {
		// Allowed names' addresses pass even where the default or a deny
		// rule would drop them.
		cl.Learned = func(name string, addrs []netip.Addr, ttl time.Duration) { m.learn(n, id, name, addrs, ttl) }
	}
	return cl, true
}

// hostResolvers reads the nameservers of a resolv.conf as host:53.
func hostResolvers(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			if a, err := netip.ParseAddr(fields[1]); err == nil {
				out = append(out, net.JoinHostPort(a.String(), "53"))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New(path + " names no nameserver")
	}
	return out, nil
}
