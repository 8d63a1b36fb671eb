package dnsfilter

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// headerSize is the size of a DNS message header.
const headerSize = 12

// query is a query from a sandbox that passed screen: either already
// answered (reply is set) or to be forwarded for name.
type query struct {
	req    *dns.Msg // nil when the message did not parse
	reply  *dns.Msg
	name   string // the policy's form of the question name
	client Client
}

// screen parses a message from src and decides what to do with it: ok is
// false when it gets no reply at all (it is not a query), q.reply is set when
// it is answered without going upstream, and otherwise q is to be forwarded.
// b is only borrowed.
func (s *Server) screen(src netip.Addr, b []byte) (q query, ok bool) {
	// Never answer a response (or a runt): a reply to a reply could start a
	// loop between two servers.
	if len(b) < headerSize || b[2]&0x80 != 0 {
		return query{}, false
	}
	req := new(dns.Msg)
	// Parse a copy: forwarding outlives b, and the parsed message may
	// point into the bytes it came from.
	if err := req.Unpack(bytes.Clone(b)); err != nil {
		return query{reply: headerReply(b, dns.RcodeFormatError)}, true
	}
	q = query{req: req}
	c, ok := s.client(src)
	if !ok {
		q.reply = reply(req, dns.RcodeRefused)
		return q, true
	}
	if rcode := check(req); rcode != dns.RcodeSuccess {
		q.reply = reply(req, rcode)
		return q, true
	}
	name, valid := policyName(req.Question[0].Name)
	if !valid || c.Allowed == nil || !c.Allowed(name) {
		q.reply = reply(req, dns.RcodeNameError)
		return q, true
	}
	q.name, q.client = name, c
	return q, true
}

// check returns the rcode for a parsed query that this server will not
// forward, or RcodeSuccess for one it will.
func check(req *dns.Msg) int {
	if req.Opcode != dns.OpcodeQuery {
		return dns.RcodeNotImplemented
	}
	if len(req.Question) != 1 {
		return dns.RcodeFormatError
	}
	opts := 0
	for _, rr := range req.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			opts++
		}
	}
	if opts > 1 {
		return dns.RcodeFormatError // RFC 6891, section 6.1.1
	}
	if opt := req.IsEdns0(); opt != nil && opt.Version() != 0 {
		return dns.RcodeBadVers
	}
	switch q := req.Question[0]; {
	case q.Qclass != dns.ClassINET:
		return dns.RcodeNotImplemented
	case q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR:
		// A zone transfer is a stream of messages, not one reply.
		return dns.RcodeNotImplemented
	}
	return dns.RcodeSuccess
}

// policyName returns the form of a question name that Client.Allowed judges:
// lower case, without the trailing dot. valid is false for the root and for
// names with anything but letters, digits, hyphens and underscores in their
// labels: miekg/dns presents such bytes as escapes ("a\.b"), and a policy
// reading that string could take an escaped dot for a label boundary and
// allow "a\.example.test", a name under "test", as a name under
// "example.test".
func policyName(fqdn string) (name string, valid bool) {
	name = strings.ToLower(strings.TrimSuffix(fqdn, "."))
	if name == "" {
		return "", false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return "", false
		}
		for i := 0; i < len(label); i++ {
			switch ch := label[i]; {
			case 'a' <= ch && ch <= 'z', '0' <= ch && ch <= '9', ch == '-', ch == '_':
			default:
				return "", false
			}
		}
	}
	return name, true
}

// forward resolves q upstream, reports the addresses of the answer to
// q.client.Learned, and returns the reply for the sandbox: the upstream's
// answer, or SERVFAIL when no upstream answered. It returns nil when ctx
// ended first, as the server is closing and nobody will read the reply.
func (s *Server) forward(ctx context.Context, q query) *dns.Msg {
	up := upstreamQuery(q.req)
	resp, err := s.exchange(ctx, up)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		s.log.Debug("dns query failed upstream", "err", err)
		return reply(q.req, dns.RcodeServerFailure)
	}
	learn(q.client, q.name, resp)
	return relay(q.req, resp)
}

// upstreamQuery builds the query sent upstream for req afresh, with a new
// ID, so that nothing of the sandbox's message but the question and the
// DNSSEC bits (DO, CD) leaves the host: no EDNS options such as client
// subnet or cookies, no extra records.
func upstreamQuery(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.Id = dns.Id()
	m.RecursionDesired = true
	m.CheckingDisabled = req.CheckingDisabled
	m.Question = []dns.Question{req.Question[0]}
	do := false
	if opt := req.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	m.SetEdns0(upstreamUDPSize, do)
	return m
}

// exchange sends m to the upstreams in order until one answers. An answer
// with SERVFAIL or REFUSED moves on to the next upstream too, but is
// returned when no upstream does better.
func (s *Server) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	var errs []error
	var fallback *dns.Msg
	for _, addr := range s.upstreams {
		resp, err := s.exchangeWith(ctx, addr, m)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			errs = append(errs, err)
			continue
		}
		if resp.Rcode == dns.RcodeServerFailure || resp.Rcode == dns.RcodeRefused {
			fallback = resp
			continue
		}
		return resp, nil
	}
	if fallback != nil {
		return fallback, nil
	}
	return nil, errors.Join(errs...)
}

// exchangeWith asks one upstream over UDP, and again over TCP when the UDP
// answer is truncated.
func (s *Server) exchangeWith(ctx context.Context, addr string, m *dns.Msg) (*dns.Msg, error) {
	resp, err := s.roundTrip(ctx, s.udp, addr, m)
	if resp != nil && resp.Truncated {
		resp, err = s.roundTrip(ctx, s.tcp, addr, m)
	}
	if err != nil {
		return nil, fmt.Errorf("query upstream %s: %w", addr, err)
	}
	if !answers(resp, m) {
		return nil, fmt.Errorf("query upstream %s: answer for another question", addr)
	}
	return resp, nil
}

// roundTrip is one exchange with one upstream, bounded by the client's
// timeout and abandoned as soon as ctx ends: dns.Client only takes the
// deadline of a context, so the connection is closed under it instead.
func (s *Server) roundTrip(ctx context.Context, c *dns.Client, addr string, m *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	conn, err := c.DialContext(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(ctx, m, conn)
	if resp != nil && resp.Truncated {
		// A truncated answer may end mid-record; the caller retries over
		// TCP whatever the parse error.
		return resp, nil
	}
	return resp, err
}

// answers reports whether resp is a response to m's question. An error
// response may carry no question at all.
func answers(resp, m *dns.Msg) bool {
	if !resp.Response {
		return false
	}
	if len(resp.Question) == 0 {
		return resp.Rcode != dns.RcodeSuccess
	}
	got, want := resp.Question[0], m.Question[0]
	return len(resp.Question) == 1 && got.Qtype == want.Qtype && got.Qclass == want.Qclass &&
		strings.EqualFold(got.Name, want.Name)
}

// learn reports to c.Learned the addresses that resp gives for name.
func learn(c Client, name string, resp *dns.Msg) {
	if c.Learned == nil || resp.Rcode != dns.RcodeSuccess {
		return
	}
	addrs, ttl := addresses(name, resp.Answer)
	if len(addrs) == 0 {
		return
	}
	c.Learned(name, addrs, ttl)
}

// addresses returns the distinct A and AAAA addresses in answer whose owner
// is name or a name reached from it through CNAMEs, and the TTL to keep them:
// the smallest TTL of those records and of the CNAMEs followed, clamped to
// [MinTTL, MaxTTL]. Records for other owners are ignored: an upstream (or
// whoever spoofs one) must not open the firewall to addresses the sandbox
// did not ask for.
func addresses(name string, answer []dns.RR) ([]netip.Addr, time.Duration) {
	cnames := make(map[string][]*dns.CNAME)
	for _, rr := range answer {
		if cn, ok := rr.(*dns.CNAME); ok {
			owner := ownerName(cn.Hdr.Name)
			cnames[owner] = append(cnames[owner], cn)
		}
	}
	reached := map[string]bool{name: true}
	minTTL := uint32(math.MaxUint32)
	for queue := []string{name}; len(queue) > 0; queue = queue[1:] {
		for _, cn := range cnames[queue[0]] {
			minTTL = min(minTTL, cn.Hdr.Ttl)
			if target := ownerName(cn.Target); !reached[target] {
				reached[target] = true
				queue = append(queue, target)
			}
		}
	}

	var addrs []netip.Addr
	seen := make(map[netip.Addr]bool)
	for _, rr := range answer {
		addr, ok := addressOf(rr)
		if !ok || !reached[ownerName(rr.Header().Name)] {
			continue
		}
		minTTL = min(minTTL, rr.Header().Ttl)
		if !seen[addr] {
			seen[addr] = true
			addrs = append(addrs, addr)
		}
	}
	ttl := time.Duration(minTTL) * time.Second
	return addrs, min(max(ttl, MinTTL), MaxTTL)
}

// addressOf returns the address of an A or AAAA record.
func addressOf(rr dns.RR) (netip.Addr, bool) {
	switch rr := rr.(type) {
	case *dns.A:
		return netip.AddrFromSlice(rr.A.To4())
	case *dns.AAAA:
		return netip.AddrFromSlice(rr.AAAA.To16())
	}
	return netip.Addr{}, false
}

// ownerName is the form of a record's owner name that compares with the
// question's policy name.
func ownerName(fqdn string) string {
	return strings.ToLower(strings.TrimSuffix(fqdn, "."))
}

// relay turns an upstream's answer into the reply to req: the sandbox's ID
// and question, and the sandbox's own EDNS0 terms in place of the
// upstream's. resp is modified.
func relay(req, resp *dns.Msg) *dns.Msg {
	resp.Id = req.Id
	resp.Question = req.Question
	resp.RecursionDesired = req.RecursionDesired
	resp.RecursionAvailable = true
	extra := resp.Extra[:0]
	for _, rr := range resp.Extra {
		if t := rr.Header().Rrtype; t != dns.TypeOPT && t != dns.TypeTSIG {
			extra = append(extra, rr)
		}
	}
	resp.Extra = extra
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(upstreamUDPSize, opt.Do())
	}
	return resp
}

// reply returns a reply to req with rcode and no records.
func reply(req *dns.Msg, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(req, rcode)
	if len(req.Question) != 1 {
		m.Question = nil
	}
	m.RecursionAvailable = true
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(upstreamUDPSize, opt.Do())
	}
	return m
}

// headerReply returns a header-only reply with rcode to the message whose
// bytes are b, for when b does not parse.
// Preconditions: len(b) >= headerSize.
func headerReply(b []byte, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.Id = binary.BigEndian.Uint16(b)
	m.Response = true
	m.Opcode = int(b[2]>>3) & 0xF
	m.Rcode = rcode
	return m
}

// udpLimit is the largest reply req may get over UDP: 512 bytes, or the
// client's EDNS0 buffer size, capped at maxClientUDPSize.
func udpLimit(req *dns.Msg) int {
	if req == nil {
		return dns.MinMsgSize
	}
	opt := req.IsEdns0()
	if opt == nil {
		return dns.MinMsgSize
	}
	return min(max(int(opt.UDPSize()), dns.MinMsgSize), maxClientUDPSize)
}

// pack encodes reply m to req in at most limit bytes. A reply over the limit
// is truncated as a server does: TC set, answer, authority and additional
// records stripped, so the client asks again over TCP. A reply that does not
// encode becomes SERVFAIL; pack returns nil when not even that encodes.
func (s *Server) pack(req, m *dns.Msg, limit int) []byte {
	b, err := fit(m, limit)
	if err == nil {
		return b
	}
	s.log.Debug("dns reply does not encode", "err", err)
	if req == nil {
		return nil
	}
	if b, err = fit(reply(req, dns.RcodeServerFailure), limit); err != nil {
		return nil
	}
	return b
}

func fit(m *dns.Msg, limit int) ([]byte, error) {
	m.Compress = true
	b, err := m.Pack()
	if err != nil || len(b) <= limit {
		return b, err
	}
	m.Truncated = true
	m.Answer, m.Ns = nil, nil
	var extra []dns.RR
	if opt := m.IsEdns0(); opt != nil {
		extra = []dns.RR{opt}
	}
	m.Extra = extra
	if b, err = m.Pack(); err == nil && len(b) > limit {
		err = fmt.Errorf("truncated reply of %d bytes over the %d-byte limit", len(b), limit)
	}
	return b, err
}
