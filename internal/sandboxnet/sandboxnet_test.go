package sandboxnet_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"

	"github.com/denhq/den/internal/sandboxnet"
	"github.com/denhq/den/internal/sandboxnet/fakeinternet"
)

// needRoot skips t where netns and nftables cannot be used.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("DEN_REQUIRE_INTEGRATION") != "" {
			t.Fatal("sandbox networks need root (DEN_REQUIRE_INTEGRATION is set)")
		}
		t.Skip("sandbox networks need root")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// How long a dial waits: a connection the test expects to be refused
// (its SYN is dropped) waits shortRefusal; one it expects to connect
// waits longer than TCP's first SYN retransmission (1 s), so that a SYN
// lost on a loaded machine does not read as a refusal.
const (
	shortRefusal = 700 * time.Millisecond
	connectWait  = 4 * time.Second
)

// get fetches http://addr/ from inside nt's namespace: the body, or the
// error ("" body).
func get(nt sandboxnet.Net, addr string) (string, error) {
	return getHost(nt, addr, "x", connectWait)
}

// getHost is get with the Host header host ("" sends none), dialing for
// at most wait.
func getHost(nt sandboxnet.Net, addr, host string, wait time.Duration) (string, error) {
	var body string
	err := sandboxnet.InNetns(nt.Netns, func() error {
		conn, err := net.DialTimeout("tcp", addr, wait)
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		if host == "" {
			fmt.Fprintf(conn, "GET / HTTP/1.0\r\n\r\n")
		} else {
			fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", host)
		}
		data, err := io.ReadAll(conn)
		if err != nil {
			return err
		}
		head, b, _ := strings.Cut(string(data), "\r\n\r\n")
		if status, _, _ := strings.Cut(head, "\r\n"); !strings.Contains(status, " 200 ") {
			return fmt.Errorf("%s: %s", status, b)
		}
		body = b
		return nil
	})
	return body, err
}

func openTest(t *testing.T) *sandboxnet.Manager {
	t.Helper()
	needRoot(t)
	m, err := sandboxnet.Open(sandboxnet.Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { must(t, m.Remove()) })
	return m
}

// reach checks which of the addresses nt reaches.
func reach(t *testing.T, what string, nt sandboxnet.Net, want map[string]bool) {
	t.Helper()
	reachAs(t, what, nt, "x", want)
}

// reachAs is reach with the Host header host.
func reachAs(t *testing.T, what string, nt sandboxnet.Net, host string, want map[string]bool) {
	t.Helper()
	for addr, ok := range want {
		wait := shortRefusal
		if ok {
			wait = connectWait
		}
		body, err := getHost(nt, addr, host, wait)
		got := err == nil && body != ""
		if got != ok {
			t.Errorf("%s: reach %s = %v (body %q, err %v), want %v", what, addr, got, body, err, ok)
		}
	}
}

func TestPolicies(t *testing.T) {
	m := openTest(t)
	fakeinternet.New(t)
	a, b := "198.51.100.10:80", "198.51.100.11:80"
	meta := "169.254.169.254:80"
	nt, err := m.Setup("sb-1", sandboxnet.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	reach(t, "default policy", nt, map[string]bool{a: true, b: true, meta: false})
	// The policy it has already: no nftables transaction (a claimed spare).
	before := sandboxnet.NFTTransactions(m)
	must(t, m.SetPolicy("sb-1", sandboxnet.DefaultPolicy()))
	if n := sandboxnet.NFTTransactions(m) - before; n != 0 {
		t.Errorf("setting the policy the sandbox has ran %d nftables transactions, want 0", n)
	}
	reach(t, "default policy set again", nt, map[string]bool{a: true, b: true, meta: false})
	must(t, m.SetPolicy("sb-1", sandboxnet.Policy{Internet: false}))
	if sandboxnet.NFTTransactions(m) == before {
		t.Errorf("a new policy ran no nftables transaction")
	}
	reach(t, "internet off", nt, map[string]bool{a: false, b: false})
	must(t, m.SetPolicy("sb-1", sandboxnet.Policy{Internet: false, Allow: []string{"198.51.100.10"}}))
	reach(t, "allow one address", nt, map[string]bool{a: true, b: false})
	must(t, m.SetPolicy("sb-1", sandboxnet.Policy{Internet: true, Deny: []string{"198.51.100.11/32"}}))
	reach(t, "deny one address", nt, map[string]bool{a: true, b: false})
	must(t, m.SetPolicy("sb-1", sandboxnet.Policy{Internet: false, Allow: []string{"169.254.169.254/32"}}))
	reach(t, "metadata allowed by CIDR", nt, map[string]bool{meta: true, a: false})
}

// TestIsolation checks a sandbox reaches neither the host's services nor
// another sandbox, and that a renamed network keeps working.
func TestIsolation(t *testing.T) {
	m := openTest(t)
	fakeinternet.New(t)
	n1, err := m.Setup("sb-1", sandboxnet.DefaultPolicy())
	must(t, err)
	n2, err := m.Setup("sb-2", sandboxnet.DefaultPolicy())
	must(t, err)
	// A service of the host, on every address.
	l, err := net.Listen("tcp", "0.0.0.0:0")
	must(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "host") })}
	go srv.Serve(l)
	defer srv.Close()
	// A service in sandbox 2.
	var l2 net.Listener
	must(t, sandboxnet.InNetns(n2.Netns, func() (err error) { l2, err = net.Listen("tcp", "0.0.0.0:8080"); return err }))
	srv2 := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "sb-2") })}
	go srv2.Serve(l2)
	defer srv2.Close()
	if body, err := get(n2, "127.0.0.1:8080"); body != "sb-2" {
		t.Fatalf("sandbox 2's own service: %q %v", body, err)
	}
	reach(t, "sandbox 1", n1, map[string]bool{
		fmt.Sprintf("%s:%d", n1.Gateway, port): false, // the host, by its address on the veth
		fmt.Sprintf("%s:%d", m.DNS(), port):    false, // the host, by the DNS address
		fmt.Sprintf("192.0.2.2:%d", port):      false, // the host, by another of its addresses
		n2.Addr.Addr().String() + ":8080":      false, // another sandbox
		"198.51.100.10:80":                     true,
	})
	must(t, m.Rename("sb-1", "claimed"))
	got, ok := m.Get("claimed")
	if !ok || got != n1 {
		t.Fatalf("Get after Rename = %+v, %v; want %+v", got, ok, n1)
	}
	reach(t, "renamed", got, map[string]bool{"198.51.100.10:80": true})
	must(t, m.Teardown("claimed"))
	if _, err := os.Stat(n1.Netns); !os.IsNotExist(err) {
		t.Errorf("netns file after Teardown: %v", err)
	}
	if _, err := netlink.LinkByName(n1.HostIf); err == nil {
		t.Errorf("host interface %s outlived Teardown", n1.HostIf)
	}
}

// TestReopen checks a new Manager on the same state keeps the slots and
// their policies.
func TestReopen(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	m, err := sandboxnet.Open(sandboxnet.Config{StateDir: dir})
	must(t, err)
	fakeinternet.New(t)
	nt, err := m.Setup("sb-1", sandboxnet.Policy{Internet: true, Deny: []string{"198.51.100.11"}})
	must(t, err)
	m2, err := sandboxnet.Open(sandboxnet.Config{StateDir: dir})
	must(t, err)
	t.Cleanup(func() { must(t, m2.Remove()) })
	got, ok := m2.Get("sb-1")
	if !ok || got != nt {
		t.Fatalf("reopened Get = %+v, %v; want %+v", got, ok, nt)
	}
	reach(t, "after reopen", got, map[string]bool{"198.51.100.10:80": true, "198.51.100.11:80": false})
}

// TestTwoDens checks two managers on one host (two dens) pick different
// address ranges.
func TestTwoDens(t *testing.T) {
	m1, m2 := openTest(t), openTest(t)
	if m1.CIDR().Overlaps(m2.CIDR()) {
		t.Fatalf("two dens share addresses: %s and %s", m1.CIDR(), m2.CIDR())
	}
	n1, err := m1.Setup("a", sandboxnet.DefaultPolicy())
	must(t, err)
	n2, err := m2.Setup("a", sandboxnet.DefaultPolicy())
	must(t, err)
	if n1.HostIf == n2.HostIf {
		t.Fatalf("two dens name their interfaces alike: %s", n1.HostIf)
	}
}

// lookup asks the resolver at server for name's A records from inside
// nt's namespace: the addresses, the rcode's name when not NOERROR, or
// "no answer".
func lookup(t *testing.T, nt sandboxnet.Net, server, name string) string {
	t.Helper()
	var out string
	must(t, sandboxnet.InNetns(nt.Netns, func() error {
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), dns.TypeA)
		c := &dns.Client{Timeout: 2 * time.Second}
		r, _, err := c.Exchange(q, net.JoinHostPort(server, "53"))
		if err != nil {
			out = "no answer"
			return nil
		}
		if r.Rcode != dns.RcodeSuccess {
			out = dns.RcodeToString[r.Rcode]
			return nil
		}
		var addrs []string
		for _, rr := range r.Answer {
			if a, ok := rr.(*dns.A); ok {
				addrs = append(addrs, a.A.String())
			}
		}
		out = strings.Join(addrs, ",")
		return nil
	}))
	return out
}

// TestDomainPolicy checks domain rules: with --allow example.test only
// that name resolves, its address opens once resolved through den, an
// address looked up elsewhere stays shut, and policy changes apply.
func TestDomainPolicy(t *testing.T) {
	m := openTest(t)
	in := fakeinternet.New(t)
	in.ServeDNS(t, map[string]string{"example.test": "198.51.100.10", "other.test": "198.51.100.11"})
	must(t, m.StartDNS([]string{"198.51.100.53:53"}))
	nt, err := m.Setup("sb-1", sandboxnet.Policy{Internet: false, Allow: []string{"example.test"}})
	must(t, err)
	dnsAddr := nt.DNS.String()
	reach(t, "before any lookup", nt, map[string]bool{"198.51.100.10:80": false})
	if got := lookup(t, nt, dnsAddr, "example.test"); got != "198.51.100.10" {
		t.Fatalf("lookup example.test = %q", got)
	}
	if got := lookup(t, nt, dnsAddr, "other.test"); got != "NXDOMAIN" {
		t.Errorf("lookup other.test = %q, want NXDOMAIN", got)
	}
	if got := lookup(t, nt, "198.51.100.53", "other.test"); got != "no answer" {
		t.Errorf("a lookup at another server answered %q: DNS must obey the policy", got)
	}
	reachAs(t, "allow example.test", nt, "example.test", map[string]bool{"198.51.100.10:80": true, "198.51.100.11:80": false})
	// A policy that no longer allows example.test closes its address at
	// once, without waiting for the TTL; one that still does keeps it.
	must(t, m.SetPolicy("sb-1", sandboxnet.Policy{Internet: false, Allow: []string{"example.test", "x.test"}}))
	reachAs(t, "still allowed", nt, "example.test", map[string]bool{"198.51.100.10:80": true})
	must(t, m.SetPolicy("sb-1", sandboxnet.Policy{Internet: false, Allow: []string{"x.test"}}))
	reachAs(t, "no longer allowed", nt, "example.test", map[string]bool{"198.51.100.10:80": false})

	// Default policy: every name resolves, nothing is learned.
	must(t, m.SetPolicy("sb-1", sandboxnet.DefaultPolicy()))
	if got := lookup(t, nt, dnsAddr, "other.test"); got != "198.51.100.11" {
		t.Errorf("default policy: lookup other.test = %q", got)
	}
	reach(t, "default policy", nt, map[string]bool{"198.51.100.11:80": true})
	must(t, m.SetPolicy("sb-1", sandboxnet.Policy{Internet: true, Deny: []string{"other.test"}}))
	if got := lookup(t, nt, dnsAddr, "other.test"); got != "NXDOMAIN" {
		t.Errorf("deny other.test: lookup = %q", got)
	}
	must(t, m.SetPolicy("sb-1", sandboxnet.Policy{Internet: false}))
	if got := lookup(t, nt, dnsAddr, "example.test"); got != "NXDOMAIN" {
		t.Errorf("internet off: lookup = %q", got)
	}
}

// TestNameCheck: with the internet off and a domain allowed, a
// connection to that domain's address passes only when it names that
// domain (HTTP Host, TLS server name): another name served at the same
// address, or none, is refused, with a 403 naming why for HTTP.
func TestNameCheck(t *testing.T) {
	m := openTest(t)
	in := fakeinternet.New(t)
	in.ServeDNS(t, map[string]string{"example.test": "198.51.100.10", "alias.test": "198.51.100.10"})
	in.Serve(t, "198.51.100.10:443", "plain http on 443") // answers a TLS hello with an HTTP error
	must(t, m.StartDNS([]string{"198.51.100.53:53"}))
	nt, err := m.Setup("sb-1", sandboxnet.Policy{Internet: false, Allow: []string{"example.test", "*.wild.test"}})
	must(t, err)
	if got := lookup(t, nt, nt.DNS.String(), "example.test"); got != "198.51.100.10" {
		t.Fatalf("lookup example.test = %q", got)
	}
	a := "198.51.100.10:80"
	reachAs(t, "Host example.test", nt, "example.test", map[string]bool{a: true})
	reachAs(t, "Host example.test:80", nt, "example.test:80", map[string]bool{a: true})
	for _, host := range []string{"alias.test", "other.test", "", "198.51.100.10"} {
		reachAs(t, "Host "+host, nt, host, map[string]bool{a: false})
	}
	data, _ := raw(nt, a, "GET / HTTP/1.1\r\nHost: alias.test\r\n\r\n")
	if !strings.HasPrefix(data, "HTTP/1.1 403 Forbidden") || !strings.Contains(data, "does not allow alias.test") {
		t.Errorf("refused HTTP answer: %q", data)
	}
	// TLS: the server name decides.
	if got := tlsHello(t, nt, "198.51.100.10:443", "example.test"); !strings.Contains(got, "does not look like a TLS handshake") {
		t.Errorf("TLS to example.test: %q, want the upstream's (HTTP) answer", got)
	}
	for _, sni := range []string{"alias.test", ""} {
		if got := tlsHello(t, nt, "198.51.100.10:443", sni); !strings.Contains(got, "EOF") && !strings.Contains(got, "reset") {
			t.Errorf("TLS with server name %q: %q, want the connection closed", sni, got)
		}
	}
	// An allowed CIDR lets the address through whatever the name.
	must(t, m.SetPolicy("sb-1", sandboxnet.Policy{Internet: false, Allow: []string{"example.test", "198.51.100.0/24"}}))
	reachAs(t, "CIDR allowed", nt, "alias.test", map[string]bool{a: true})
	// With the internet on there is no name check.
	must(t, m.SetPolicy("sb-1", sandboxnet.Policy{Internet: true, Allow: []string{"example.test"}}))
	reachAs(t, "internet on", nt, "alias.test", map[string]bool{a: true})
}

// raw sends req to addr from inside nt and returns what came back.
func raw(nt sandboxnet.Net, addr, req string) (string, error) {
	var out string
	err := sandboxnet.InNetns(nt.Netns, func() error {
		conn, err := net.DialTimeout("tcp", addr, connectWait)
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(conn, req)
		data, err := io.ReadAll(conn)
		out = string(data)
		return err
	})
	return out, err
}

// tlsHello starts a TLS handshake with server name sni to addr from
// inside nt and returns its error's text.
func tlsHello(t *testing.T, nt sandboxnet.Net, addr, sni string) string {
	t.Helper()
	var out string
	must(t, sandboxnet.InNetns(nt.Netns, func() error {
		conn, err := net.DialTimeout("tcp", addr, connectWait)
		if err != nil {
			out = err.Error()
			return nil
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		err = tls.Client(conn, &tls.Config{ServerName: sni, InsecureSkipVerify: true}).Handshake()
		if err != nil {
			out = err.Error()
		}
		return nil
	}))
	return out
}
