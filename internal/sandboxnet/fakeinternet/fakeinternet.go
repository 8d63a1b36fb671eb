// Package fakeinternet is a test's internet: a network namespace behind a
// veth from the host, routed from the host, with web servers that answer
// their own address and a DNS server whose zone the test gives. Sandboxes
// reach it through den's NAT as they would reach the real one; nothing
// leaves the machine.
package fakeinternet

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/sandboxnet"
)

// The internet's addresses (documentation ranges: never real hosts).
const (
	// WebA and WebB answer HTTP on port 80 with their own address.
	WebA = "198.51.100.10"
	WebB = "198.51.100.11"
	// Metadata answers HTTP on port 80 like a cloud's metadata service.
	Metadata = "169.254.169.254"
	// DNS is where ServeDNS listens, on port 53.
	DNS = "198.51.100.53"
)

// lockPath serialises fake internets across test processes: they all use
// the same addresses.
const lockPath = "/run/den-fakeinternet.lock"

// Internet is a running fake internet.
type Internet struct {
	// Netns is its namespace's path.
	Netns string
}

// New starts a fake internet for t, which it removes when t ends. It
// holds a host-wide lock until then: one fake internet at a time.
func New(t testing.TB) *Internet {
	t.Helper()
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	must(t, err)
	must(t, unix.Flock(int(lock.Fd()), unix.LOCK_EX))
	t.Cleanup(func() { lock.Close() })
	removeStale(t)
	in := &Internet{Netns: filepath.Join(t.TempDir(), "internet")}
	must(t, sandboxnet.NewNetns(in.Netns))
	t.Cleanup(func() { sandboxnet.RemoveNetns(in.Netns) })
	host := fmt.Sprintf("denfi%08x", rand.Uint32())
	ns, err := netns.GetFromPath(in.Netns)
	must(t, err)
	defer ns.Close()
	must(t, netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}))
	l, err := netlink.LinkByName(host)
	must(t, err)
	t.Cleanup(func() { netlink.LinkDel(l) })
	must(t, netlink.AddrAdd(l, addr("198.51.100.1/24")))
	must(t, netlink.LinkSetUp(l))
	must(t, netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: addr(Metadata + "/32").IPNet}))
	h, err := netlink.NewHandleAt(ns)
	must(t, err)
	defer h.Close()
	eth, err := h.LinkByName("eth0")
	must(t, err)
	for _, a := range []string{"198.51.100.2/24", WebA + "/32", WebB + "/32", DNS + "/32", Metadata + "/32"} {
		must(t, h.AddrAdd(eth, addr(a)))
	}
	must(t, h.LinkSetUp(eth))
	lo, err := h.LinkByName("lo")
	must(t, err)
	must(t, h.LinkSetUp(lo))
	must(t, h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.ParseIP("198.51.100.1")}))
	for _, a := range []string{WebA, WebB, Metadata} {
		in.Serve(t, a+":80", a)
	}
	return in
}

func addr(s string) *netlink.Addr {
	p := netip.MustParsePrefix(s)
	return &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), 32)}}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Serve answers every HTTP request on addr with body.
func (in *Internet) Serve(t testing.TB, addr, body string) {
	t.Helper()
	var l net.Listener
	must(t, sandboxnet.InNetns(in.Netns, func() (err error) { l, err = net.Listen("tcp", addr); return err }))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

// ServeDNS answers A queries on DNS:53 (UDP) from zone (name without the
// trailing dot → IPv4 address), NXDOMAIN for other names.
func (in *Internet) ServeDNS(t testing.TB, zone map[string]string) {
	t.Helper()
	var pc net.PacketConn
	must(t, sandboxnet.InNetns(in.Netns, func() (err error) { pc, err = net.ListenPacket("udp", DNS+":53"); return err }))
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		r := new(dns.Msg)
		r.SetReply(q)
		if len(q.Question) != 1 {
			r.Rcode = dns.RcodeFormatError
			w.WriteMsg(r)
			return
		}
		name := strings.TrimSuffix(q.Question[0].Name, ".")
		a, ok := zone[name]
		switch {
		case !ok:
			r.Rcode = dns.RcodeNameError
		case q.Question[0].Qtype == dns.TypeA:
			r.Answer = append(r.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30}, A: net.ParseIP(a)})
		}
		w.WriteMsg(r)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
}

// removeStale deletes the host ends of fake internets whose tests died
// without cleaning up (a killed test binary): holding the lock, any is
// stale, and its routes would clash with this one's.
func removeStale(t testing.TB) {
	links, err := netlink.LinkList()
	must(t, err)
	for _, l := range links {
		if _, ok := l.(*netlink.Veth); ok && strings.HasPrefix(l.Attrs().Name, "denfi") {
			must(t, netlink.LinkDel(l))
		}
	}
}
