package dnsfilter

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/miekg/dns"

	"github.com/denhq/den/internal/errdefs"
)

// upstream is a fake upstream DNS server on loopback, over UDP and TCP on the
// same port, that counts the queries it sees by name.
type upstream struct {
	addr string

	mu     sync.Mutex
	counts map[string]int // guarded by mu
}

func (u *upstream) count(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.counts[strings.ToLower(name)]
}

func (u *upstream) total() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, c := range u.counts {
		n += c
	}
	return n
}

func rr(t *testing.T, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("dns.NewRR(%q): %v", s, err)
	}
	return r
}

// fakeZone answers the fake upstream's names.
func fakeZone(t *testing.T) map[string][]dns.RR {
	z := map[string][]dns.RR{
		"a.example.test.": {rr(t, "a.example.test. 60 IN A 198.51.100.10")},
		"c.example.test.": {
			rr(t, "c.example.test. 300 IN CNAME a.example.test."),
			rr(t, "a.example.test. 60 IN A 198.51.100.10"),
			// Not on the chain from c.example.test: must not be learned.
			rr(t, "other.example.test. 60 IN A 203.0.113.99"),
		},
		"txt.example.test.": {rr(t, `txt.example.test. 60 IN TXT "hello"`)},
	}
	for i := 1; i <= 40; i++ {
		z["big.example.test."] = append(z["big.example.test."], rr(t, fmt.Sprintf("big.example.test. 60 IN A 198.51.100.%d", i)))
	}
	for i := 1; i <= 100; i++ {
		z["huge.example.test."] = append(z["huge.example.test."], rr(t, fmt.Sprintf("huge.example.test. 30 IN A 203.0.113.%d", i)))
	}
	return z
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{counts: make(map[string]int)}
	zone := fakeZone(t)
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		q := req.Question[0]
		u.mu.Lock()
		u.counts[strings.ToLower(q.Name)]++
		u.mu.Unlock()
		name := strings.ToLower(q.Name)
		if name == "slow.example.test." {
			return // never answers
		}
		m := new(dns.Msg)
		m.SetReply(req)
		m.RecursionAvailable = true
		recs, ok := zone[name]
		if !ok {
			m.Rcode = dns.RcodeNameError
		}
		for _, r := range recs {
			if q.Qtype == r.Header().Rrtype || r.Header().Rrtype == dns.TypeCNAME {
				m.Answer = append(m.Answer, r)
			}
		}
		if w.RemoteAddr().Network() == "udp" {
			size := dns.MinMsgSize
			if opt := req.IsEdns0(); opt != nil {
				size = int(opt.UDPSize())
			}
			m.Truncate(size)
		}
		w.WriteMsg(m)
	})
	pc, l := listenPair(t)
	u.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: l, Handler: handler}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return u
}

// listenPair listens on UDP and TCP on the same loopback port.
func listenPair(t *testing.T) (net.PacketConn, net.Listener) {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l
		}
		pc.Close()
	}
	t.Fatal("no loopback port free for both UDP and TCP")
	return nil, nil
}

// deadUpstream is a loopback UDP address nothing listens on.
func deadUpstream(t *testing.T) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

type learned struct {
	Name  string
	Addrs []netip.Addr
	TTL   time.Duration
}

// recorder records Learned calls.
type recorder struct {
	mu    sync.Mutex
	calls []learned
}

func (r *recorder) learned(name string, addrs []netip.Addr, ttl time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, learned{name, addrs, ttl})
}

// take returns the calls so far and forgets them.
func (r *recorder) take() []learned {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

// allowed is a deliberately naive suffix policy: it would allow the escaped
// name "a\.example.test" if the server passed it on.
func allowed(name string) bool {
	if name == "secret.example.test" {
		return false
	}
	return name == "example.test" || strings.HasSuffix(name, ".example.test")
}

type testServer struct {
	srv       *Server
	udp, tcp  string
	serveErrs chan error
}

func startServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	pc, l := listenPair(t)
	ts := &testServer{srv: s, udp: pc.LocalAddr().String(), tcp: l.Addr().String(), serveErrs: make(chan error, 2)}
	go func() { ts.serveErrs <- s.Serve(pc) }()
	go func() { ts.serveErrs <- s.ServeTCP(l) }()
	t.Cleanup(func() { s.Close() })
	return ts
}

func ask(t *testing.T, network, addr, name string, qtype uint16, edns uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns != 0 {
		m.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	return resp
}

func answerAddrs(m *dns.Msg) []netip.Addr {
	var out []netip.Addr
	for _, r := range m.Answer {
		if a, ok := addressOf(r); ok {
			out = append(out, a)
		}
	}
	return out
}

var cmpAddrs = cmpopts.EquateComparable(netip.Addr{})

func TestNewRejectsBadConfig(t *testing.T) {
	client := func(netip.Addr) (Client, bool) { return Client{}, true }
	tests := []struct {
		name string
		cfg  Config
		msg  string
	}{
		{"no upstreams", Config{Client: client}, "dns filter: no upstream servers"},
		{"no client", Config{Upstreams: []string{"127.0.0.1:53"}}, "dns filter: no Client function"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if !errdefs.Is(err, errdefs.InvalidArgument) || err.Error() != tt.msg {
				t.Fatalf("New() error = %v (%s), want InvalidArgument %q", err, errdefs.KindOf(err), tt.msg)
			}
		})
	}
}

func TestServer(t *testing.T) {
	up := startUpstream(t)
	rec := &recorder{}
	ts := startServer(t, Config{
		// The dead upstream first: every query also tests moving on.
		Upstreams: []string{deadUpstream(t), up.addr},
		Client: func(src netip.Addr) (Client, bool) {
			return Client{Allowed: allowed, Learned: rec.learned}, src == netip.MustParseAddr("127.0.0.1")
		},
		Timeout: 500 * time.Millisecond,
	})

	t.Run("allowed name", func(t *testing.T) {
		resp := ask(t, "udp", ts.udp, "A.Example.Test.", dns.TypeA, 0)
		if resp.Rcode != dns.RcodeSuccess || resp.Question[0].Name != "A.Example.Test." {
			t.Fatalf("reply = %v, want NOERROR echoing the question", resp)
		}
		want := []netip.Addr{netip.MustParseAddr("198.51.100.10")}
		if diff := cmp.Diff(want, answerAddrs(resp), cmpAddrs); diff != "" {
			t.Errorf("answer (-want +got):\n%s", diff)
		}
		wantLearned := []learned{{"a.example.test", want, 60 * time.Second}}
		if diff := cmp.Diff(wantLearned, rec.take(), cmpAddrs); diff != "" {
			t.Errorf("Learned (-want +got):\n%s", diff)
		}
	})

	t.Run("cname", func(t *testing.T) {
		resp := ask(t, "tcp", ts.tcp, "c.example.test.", dns.TypeA, 0)
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 3 {
			t.Fatalf("reply = %v, want NOERROR with 3 records", resp)
		}
		want := []learned{{"c.example.test", []netip.Addr{netip.MustParseAddr("198.51.100.10")}, 60 * time.Second}}
		if diff := cmp.Diff(want, rec.take(), cmpAddrs); diff != "" {
			t.Errorf("Learned (-want +got):\n%s", diff)
		}
	})

	t.Run("other types are forwarded, not learned", func(t *testing.T) {
		resp := ask(t, "udp", ts.udp, "txt.example.test.", dns.TypeTXT, 0)
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
			t.Fatalf("reply = %v, want NOERROR with one TXT", resp)
		}
		if got := rec.take(); len(got) != 0 {
			t.Errorf("Learned calls = %v, want none", got)
		}
	})

	t.Run("upstream NXDOMAIN", func(t *testing.T) {
		resp := ask(t, "udp", ts.udp, "missing.example.test.", dns.TypeA, 0)
		if resp.Rcode != dns.RcodeNameError || up.count("missing.example.test.") == 0 {
			t.Fatalf("reply rcode = %s after %d upstream queries, want NXDOMAIN from upstream",
				dns.RcodeToString[resp.Rcode], up.count("missing.example.test."))
		}
	})

	refused := []struct {
		name string
		q    string
	}{
		{"refused by policy", "secret.example.test."},
		{"outside the policy", "example.org."},
		{"escaped dot", `a\.example.test.`},
		{"root", "."},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			before := up.total()
			resp := ask(t, "udp", ts.udp, tt.q, dns.TypeA, 0)
			if resp.Rcode != dns.RcodeNameError {
				t.Errorf("rcode = %s, want NXDOMAIN", dns.RcodeToString[resp.Rcode])
			}
			if n := up.total() - before; n != 0 {
				t.Errorf("upstream saw %d queries, want none", n)
			}
		})
	}

	t.Run("truncated over udp, whole over tcp", func(t *testing.T) {
		resp := ask(t, "udp", ts.udp, "big.example.test.", dns.TypeA, 0)
		if !resp.Truncated || len(resp.Answer) != 0 {
			t.Fatalf("udp reply TC=%v with %d answers, want TC and no answers", resp.Truncated, len(resp.Answer))
		}
		resp = ask(t, "tcp", ts.tcp, "big.example.test.", dns.TypeA, 0)
		if resp.Truncated || len(resp.Answer) != 40 {
			t.Fatalf("tcp reply TC=%v with %d answers, want 40", resp.Truncated, len(resp.Answer))
		}
		rec.take()
	})

	t.Run("client edns size", func(t *testing.T) {
		// 100 records are over the upstream UDP size, so the server asks
		// upstream again over TCP, and fit in the client's 4096 bytes.
		resp := ask(t, "udp", ts.udp, "huge.example.test.", dns.TypeA, 4096)
		if resp.Truncated || len(resp.Answer) != 100 || resp.IsEdns0() == nil {
			t.Fatalf("reply TC=%v with %d answers, OPT %v; want 100 answers and an OPT",
				resp.Truncated, len(resp.Answer), resp.IsEdns0())
		}
		calls := rec.take()
		if len(calls) != 1 || len(calls[0].Addrs) != 100 || calls[0].TTL != 30*time.Second {
			t.Fatalf("Learned calls = %v, want one with 100 addresses for 30s", calls)
		}
	})

	t.Run("upstream timeout", func(t *testing.T) {
		resp := ask(t, "udp", ts.udp, "slow.example.test.", dns.TypeA, 0)
		if resp.Rcode != dns.RcodeServerFailure {
			t.Fatalf("rcode = %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
		}
	})

	notImplemented := []struct {
		name  string
		build func(m *dns.Msg)
	}{
		{"class CH", func(m *dns.Msg) { m.SetQuestion("a.example.test.", dns.TypeA).Question[0].Qclass = dns.ClassCHAOS }},
		{"zone transfer", func(m *dns.Msg) { m.SetQuestion("example.test.", dns.TypeAXFR) }},
		{"opcode NOTIFY", func(m *dns.Msg) { m.SetNotify("example.test.") }},
	}
	for _, tt := range notImplemented {
		t.Run(tt.name, func(t *testing.T) {
			m := new(dns.Msg)
			tt.build(m)
			resp, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, ts.udp)
			if err != nil || resp.Rcode != dns.RcodeNotImplemented {
				t.Errorf("reply = %v, %v; want NOTIMP", resp, err)
			}
		})
	}
}

func TestUnknownSourceIsRefused(t *testing.T) {
	up := startUpstream(t)
	ts := startServer(t, Config{
		Upstreams: []string{up.addr},
		Client:    func(netip.Addr) (Client, bool) { return Client{}, false },
	})
	for _, network := range []string{"udp", "tcp"} {
		addr := map[string]string{"udp": ts.udp, "tcp": ts.tcp}[network]
		resp := ask(t, network, addr, "a.example.test.", dns.TypeA, 0)
		if resp.Rcode != dns.RcodeRefused {
			t.Errorf("%s: rcode = %s, want REFUSED", network, dns.RcodeToString[resp.Rcode])
		}
	}
	if n := up.total(); n != 0 {
		t.Errorf("upstream saw %d queries, want none", n)
	}
}

func TestGarbage(t *testing.T) {
	up := startUpstream(t)
	ts := startServer(t, Config{
		Upstreams: []string{up.addr},
		Client: func(netip.Addr) (Client, bool) {
			return Client{Allowed: allowed}, true
		},
	})
	conn, err := net.Dial("udp", ts.udp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))

	exchange := func(t *testing.T, b []byte) *dns.Msg {
		t.Helper()
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 65535)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("read reply: %v", err)
			}
			m := new(dns.Msg)
			if err := m.Unpack(buf[:n]); err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			if m.Id == binary.BigEndian.Uint16(b) {
				return m
			}
		}
	}

	t.Run("header only", func(t *testing.T) {
		b := []byte{0x12, 0x34, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		if m := exchange(t, b); m.Rcode != dns.RcodeFormatError {
			t.Errorf("rcode = %s, want FORMERR", dns.RcodeToString[m.Rcode])
		}
	})
	t.Run("two questions", func(t *testing.T) {
		m := new(dns.Msg)
		m.SetQuestion("a.example.test.", dns.TypeA)
		m.Question = append(m.Question, dns.Question{Name: "secret.example.test.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if r := exchange(t, b); r.Rcode != dns.RcodeFormatError || len(r.Question) != 0 {
			t.Errorf("reply = %v, want FORMERR without questions", r)
		}
	})
	t.Run("counts that lie", func(t *testing.T) {
		b := []byte{0xab, 0xcd, 0x01, 0, 0, 1, 0, 9, 0, 9, 0, 9, 3, 'a', 'b'}
		if m := exchange(t, b); m.Rcode != dns.RcodeFormatError {
			t.Errorf("rcode = %s, want FORMERR", dns.RcodeToString[m.Rcode])
		}
	})
	t.Run("random bytes", func(t *testing.T) {
		// In batches, each followed by a good query, so that neither
		// socket's receive buffer overflows and drops the good query.
		r := rand.New(rand.NewPCG(1, 2))
		for batch := range 20 {
			for i := range 25 {
				b := make([]byte, r.IntN(600))
				for j := range b {
					b[j] = byte(r.Uint32())
				}
				if len(b) > 2 {
					b[0], b[1] = 0xff, 0xff // never the good query's ID
				}
				if i%2 == 0 && len(b) > 2 {
					b[2] &^= 0x80 // a query, so that it gets parsed further
				}
				conn.Write(b)
			}
			// A response, a runt and an oversized datagram get no reply.
			conn.Write([]byte{0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0})
			conn.Write([]byte{0, 1, 0})
			conn.Write(make([]byte, maxQuerySize+100))
			// The server still answers; replies to the garbage are skipped.
			m := new(dns.Msg)
			m.SetQuestion("a.example.test.", dns.TypeA)
			m.Id = uint16(batch + 1)
			b, _ := m.Pack()
			if r := exchange(t, b); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Fatalf("batch %d: reply = %v, want the answer", batch, r)
			}
		}
	})
	t.Run("tcp", func(t *testing.T) {
		c, err := net.Dial("tcp", ts.tcp)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		// Claims a 65535-byte query: over the cap, so the server hangs up.
		c.Write([]byte{0xff, 0xff, 1, 2, 3})
		// The server closes with our bytes unread, so the close may come as
		// a reset rather than EOF; only a timeout means it kept the connection.
		_, err = io.ReadAll(c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("read after oversized length: %v, want the connection closed", err)
		}
	})
}

func TestClose(t *testing.T) {
	up := startUpstream(t)
	ts := startServer(t, Config{
		Upstreams: []string{up.addr},
		Client: func(netip.Addr) (Client, bool) {
			return Client{Allowed: allowed}, true
		},
		Timeout: time.Minute,
	})
	// A query stuck upstream must not hold Close up for the minute.
	c, err := net.Dial("tcp", ts.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := new(dns.Msg)
	m.SetQuestion("slow.example.test.", dns.TypeA)
	b, _ := m.Pack()
	if err := writeTCPMsg(c, b); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); up.count("slow.example.test.") == 0; {
		if time.Now().After(deadline) {
			t.Fatal("query did not reach upstream")
		}
		time.Sleep(time.Millisecond)
	}

	closed := make(chan error)
	go func() { closed <- ts.srv.Close() }()
	timeout := time.After(10 * time.Second)
	for i := range 3 {
		select {
		case err := <-ts.serveErrs:
			if err != nil {
				t.Errorf("Serve or ServeTCP returned %v, want nil", err)
			}
		case err := <-closed:
			if err != nil {
				t.Errorf("Close() = %v", err)
			}
		case <-timeout:
			t.Fatalf("%d of Serve, ServeTCP and Close returned within 10s, want 3", i)
		}
	}
	if err := ts.srv.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
	if err := ts.srv.Serve(nil); err != nil {
		t.Errorf("Serve after Close = %v, want nil", err)
	}
}

func TestAddresses(t *testing.T) {
	tests := []struct {
		name   string
		answer []string
		want   []string
		ttl    time.Duration
	}{
		{"direct", []string{"a.test. 60 IN A 192.0.2.1", "a.test. 90 IN AAAA 2001:db8::1"}, []string{"192.0.2.1", "2001:db8::1"}, 60 * time.Second},
		{"chain out of order", []string{"c.test. 40 IN A 192.0.2.3", "b.test. 300 IN CNAME c.test.", "A.test. 300 IN CNAME B.test."}, []string{"192.0.2.3"}, 40 * time.Second},
		{"cname ttl counts", []string{"a.test. 20 IN CNAME b.test.", "b.test. 60 IN A 192.0.2.2"}, []string{"192.0.2.2"}, 20 * time.Second},
		{"cname loop", []string{"a.test. 60 IN CNAME b.test.", "b.test. 60 IN CNAME a.test."}, nil, MinTTL},
		{"foreign owner", []string{"evil.test. 60 IN A 192.0.2.9", "a.test. 60 IN A 192.0.2.1"}, []string{"192.0.2.1"}, 60 * time.Second},
		{"duplicates", []string{"a.test. 60 IN A 192.0.2.1", "a.test. 60 IN A 192.0.2.1"}, []string{"192.0.2.1"}, 60 * time.Second},
		{"ttl floor", []string{"a.test. 0 IN A 192.0.2.1"}, []string{"192.0.2.1"}, MinTTL},
		{"ttl ceiling", []string{"a.test. 86400 IN A 192.0.2.1"}, []string{"192.0.2.1"}, MaxTTL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var answer []dns.RR
			for _, s := range tt.answer {
				answer = append(answer, rr(t, s))
			}
			var want []netip.Addr
			for _, s := range tt.want {
				want = append(want, netip.MustParseAddr(s))
			}
			got, ttl := addresses("a.test", answer)
			if diff := cmp.Diff(want, got, cmpAddrs); diff != "" {
				t.Errorf("addresses (-want +got):\n%s", diff)
			}
			if len(want) > 0 && ttl != tt.ttl {
				t.Errorf("ttl = %v, want %v", ttl, tt.ttl)
			}
		})
	}
}

func TestPolicyName(t *testing.T) {
	tests := []struct {
		in, want string
		valid    bool
	}{
		{"Example.TEST.", "example.test", true},
		{"_srv._tcp.example.test.", "_srv._tcp.example.test", true},
		{"1.0.0.10.in-addr.arpa.", "1.0.0.10.in-addr.arpa", true},
		{`a\.example.test.`, "", false},
		{`a\000.example.test.`, "", false},
		{"a b.example.test.", "", false},
		{".", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, valid := policyName(tt.in)
			if got != tt.want || valid != tt.valid {
				t.Errorf("policyName(%q) = %q, %v; want %q, %v", tt.in, got, valid, tt.want, tt.valid)
			}
		})
	}
}

func TestInFlightLimit(t *testing.T) {
	up := startUpstream(t)
	s, err := New(Config{
		Upstreams: []string{up.addr},
		Client: func(netip.Addr) (Client, bool) {
			return Client{Allowed: allowed}, true
		},
		Timeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.inflight = make(chan struct{}, 2) // before Serve, so no race
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(pc) }()
	t.Cleanup(func() { s.Close() })

	conn, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 5 {
		m := new(dns.Msg)
		m.SetQuestion("slow.example.test.", dns.TypeA)
		m.Id = uint16(100 + i)
		b, _ := m.Pack()
		conn.Write(b)
	}
	for deadline := time.Now().Add(10 * time.Second); up.count("slow.example.test.") < 2; {
		if time.Now().After(deadline) {
			t.Fatal("slow queries did not reach upstream")
		}
		time.Sleep(time.Millisecond)
	}
	// Queries answered locally need no slot. The server screens datagrams in
	// order, so by this reply it has dropped the three slow queries over
	// the limit.
	resp := ask(t, "udp", pc.LocalAddr().String(), "secret.example.test.", dns.TypeA, 0)
	if resp.Rcode != dns.RcodeNameError {
		t.Fatalf("rcode = %s, want NXDOMAIN", dns.RcodeToString[resp.Rcode])
	}
	if n := up.count("slow.example.test."); n != 2 {
		t.Errorf("upstream saw %d slow queries, want 2", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve returned %v, want nil", err)
	}
}

// FuzzScreen feeds arbitrary messages through the parsing and reply paths
// that run before anything goes upstream.
func FuzzScreen(f *testing.F) {
	for _, name := range []string{"a.example.test.", "secret.example.test.", `a\.b.example.test.`} {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		m.SetEdns0(4096, true)
		b, _ := m.Pack()
		f.Add(b)
	}
	f.Add([]byte{0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	s, err := New(Config{
		Upstreams: []string{"127.0.0.1:1"},
		Client: func(netip.Addr) (Client, bool) {
			return Client{Allowed: allowed}, true
		},
	})
	if err != nil {
		f.Fatal(err)
	}
	src := netip.MustParseAddr("10.0.0.2")
	f.Fuzz(func(t *testing.T, b []byte) {
		q, ok := s.screen(src, b)
		if !ok {
			return
		}
		if q.reply == nil {
			if q.name == "" || !allowed(q.name) {
				t.Fatalf("forwarding %q", q.name)
			}
			upstreamQuery(q.req).Pack()
			return
		}
		out := s.pack(q.req, q.reply, udpLimit(q.req))
		if out == nil {
			return
		}
		if len(out) > udpLimit(q.req) {
			t.Fatalf("reply of %d bytes over the limit %d", len(out), udpLimit(q.req))
		}
		if binary.BigEndian.Uint16(out) != binary.BigEndian.Uint16(b) {
			t.Fatal("reply with another ID")
		}
	})
}
