package sandboxnet

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The table (see the package comment), in nft's syntax, for instance i,
// CIDR C, DNS address D and slot n:
//
//	table inet den_i {
//	  map chains { type ifname : verdict }        # dni-n : jump sb_n
//	  chain forward { type filter hook forward priority 0
//	    iifname "dni-*" jump sb_out
//	    oifname "dni-*" ct state established,related accept
//	    oifname "dni-*" drop }
//	  chain sb_out { meta nfproto ipv6 drop
//	    ct state established,related accept
//	    iifname vmap @chains
//	    drop }
//	  chain sb_n { ip saddr != <n.2> drop; ip daddr C drop
//	    <allow CIDRs> accept; <refused ranges> drop
//	    ip daddr @learned_n accept; <deny CIDRs> drop
//	    accept|drop }
//	  set learned_n { type ipv4_addr; flags timeout }
//	  chain input { type filter hook input priority 0
//	    iifname "dni-*" jump sb_in }
//	  chain sb_in { ct state established,related accept
//	    ip daddr D udp dport 53 accept; ip daddr D tcp dport 53 accept
//	    drop }
//	  chain postrouting { type nat hook postrouting priority 100
//	    ip saddr C oifname != "dni-*" masquerade }
//	  map nat_chains { type ifname : verdict }    # dni-n : jump nat_n
//	  chain prerouting { type nat hook prerouting priority -100
//	    iifname "dni-*" iifname vmap @nat_chains }
//	  chain nat_n {    # only when the internet is off and names are allowed
//	    tcp dport {80,443} ip daddr @learned_n dnat to D:15080 }
//	}
//
// and sb_in also accepts tcp to D:15080, the name check.

// refused are the ranges no sandbox reaches unless a CIDR rule allows
// them: "this" network, the private ranges, shared address space,
// loopback, link-local (cloud metadata), multicast and reserved.
var refused = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// table is the manager's nftables objects.
type table struct {
	t        *nftables.Table
	chains   *nftables.Set // the iifname verdict map
	nats     *nftables.Set // the iifname verdict map of prerouting
	prefix   string        // interface name prefix, "dn<inst>-"
	cidr     netip.Prefix
	dns      netip.Addr
	fwd, out *nftables.Chain
}

func (m *Manager) newTable() *table {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: "den_" + m.inst}
	return &table{
		t:      t,
		chains: &nftables.Set{Table: t, Name: "chains", IsMap: true, KeyType: nftables.TypeIFName, DataType: nftables.TypeVerdict},
		nats:   &nftables.Set{Table: t, Name: "nat_chains", IsMap: true, KeyType: nftables.TypeIFName, DataType: nftables.TypeVerdict},
		prefix: m.ifPrefix(), cidr: m.cidr, dns: dnsAddr(m.cidr),
	}
}

// build replaces the table: the base chains and every slot's chain.
func (t *table) build(c *nftables.Conn, slots map[int]compiled) error {
	c.AddTable(t.t)
	c.DelTable(t.t) // an old one, with its learned sets
	c.AddTable(t.t)
	if err := c.AddSet(t.chains, nil); err != nil {
		return err
	}
	if err := c.AddSet(t.nats, nil); err != nil {
		return err
	}
	accept := policy(nftables.ChainPolicyAccept)
	t.fwd = c.AddChain(&nftables.Chain{Table: t.t, Name: "forward", Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: accept})
	t.out = c.AddChain(&nftables.Chain{Table: t.t, Name: "sb_out"})
	in := c.AddChain(&nftables.Chain{Table: t.t, Name: "input", Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: accept})
	sbIn := c.AddChain(&nftables.Chain{Table: t.t, Name: "sb_in"})
	post := c.AddChain(&nftables.Chain{Table: t.t, Name: "postrouting", Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: accept})
	pre := c.AddChain(&nftables.Chain{Table: t.t, Name: "prerouting", Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: accept})
	rule(c, pre, iifPrefix(t.prefix), []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: t.nats.Name, SetID: t.nats.ID, IsDestRegSet: true, DestRegister: 0},
	})

	rule(c, t.fwd, iifPrefix(t.prefix), jump("sb_out"))
	rule(c, t.fwd, oifPrefix(t.prefix), ctEstablished(), verdict(expr.VerdictAccept))
	rule(c, t.fwd, oifPrefix(t.prefix), verdict(expr.VerdictDrop))

	rule(c, t.out, nfproto(unix.NFPROTO_IPV6), verdict(expr.VerdictDrop))
	rule(c, t.out, ctEstablished(), verdict(expr.VerdictAccept))
	rule(c, t.out, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: t.chains.Name, SetID: t.chains.ID, IsDestRegSet: true, DestRegister: 0},
	})
	rule(c, t.out, verdict(expr.VerdictDrop))

	rule(c, in, iifPrefix(t.prefix), jump("sb_in"))
	rule(c, sbIn, ctEstablished(), verdict(expr.VerdictAccept))
	for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		rule(c, sbIn, nfproto(unix.NFPROTO_IPV4), daddrIs(t.dns), l4proto(proto), dport(53), verdict(expr.VerdictAccept))
	}
	rule(c, sbIn, nfproto(unix.NFPROTO_IPV4), daddrIs(t.dns), l4proto(unix.IPPROTO_TCP), dport(checkPort), verdict(expr.VerdictAccept))
	rule(c, sbIn, verdict(expr.VerdictDrop))

	rule(c, post, nfproto(unix.NFPROTO_IPV4), saddrIn(t.cidr), oifNotPrefix(t.prefix), []expr.Any{&expr.Masq{}})

	for n, pol := range slots {
		if err := t.addSlot(c, n, pol); err != nil {
			return err
		}
	}
	return nil
}

func policy(p nftables.ChainPolicy) *nftables.ChainPolicy { return &p }

func (t *table) slotChain(n int) *nftables.Chain {
	return &nftables.Chain{Table: t.t, Name: fmt.Sprintf("sb_%d", n)}
}

func (t *table) natChain(n int) *nftables.Chain {
	return &nftables.Chain{Table: t.t, Name: fmt.Sprintf("nat_%d", n)}
}

func (t *table) learnedSet(n int) *nftables.Set {
	return &nftables.Set{Table: t.t, Name: fmt.Sprintf("learned_%d", n), KeyType: nftables.TypeIPAddr, HasTimeout: true}
}

// addSlot adds slot n's chain, its learned set and its map entry.
func (t *table) addSlot(c *nftables.Conn, n int, pol compiled) error {
	ch := c.AddChain(t.slotChain(n))
	nat := c.AddChain(t.natChain(n))
	if err := c.AddSet(t.learnedSet(n), nil); err != nil {
		return err
	}
	t.slotRules(c, ch, n, pol)
	t.natRules(c, nat, n, pol)
	if err := c.SetAddElements(t.nats, []nftables.SetElement{{
		Key: ifname(t.ifName(n)), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: nat.Name},
	}}); err != nil {
		return err
	}
	return c.SetAddElements(t.chains, []nftables.SetElement{{
		Key: ifname(t.ifName(n)), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: ch.Name},
	}})
}

// natRules send slot n's TCP connections to learned addresses on the
// name-checked ports to the name check (namecheck.go), when its policy
// lets those addresses through only because a name rule allowed them.
func (t *table) natRules(c *nftables.Conn, ch *nftables.Chain, n int, pol compiled) {
	if pol.defaultAccept() || !pol.learns() {
		return
	}
	set := t.learnedSet(n)
	d := t.dns.As4()
	for _, port := range nameChecked {
		rule(c, ch, nfproto(unix.NFPROTO_IPV4), l4proto(unix.IPPROTO_TCP), dport(port), []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Lookup{SourceRegister: 1, SetName: set.Name},
			&expr.Immediate{Register: 1, Data: d[:]},
			&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(checkPort)},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
		})
	}
}

// slotRules are slot n's rules for pol.
func (t *table) slotRules(c *nftables.Conn, ch *nftables.Chain, n int, pol compiled) {
	own := slotAddr(t.cidr, n, 2)
	rule(c, ch, saddrNot(own), verdict(expr.VerdictDrop))
	rule(c, ch, daddrIn(t.cidr), verdict(expr.VerdictDrop))
	for _, p := range pol.allowNets {
		if !p.Overlaps(t.cidr) {
			rule(c, ch, daddrIn(p), verdict(expr.VerdictAccept))
		}
	}
	for _, p := range refused {
		rule(c, ch, daddrIn(p), verdict(expr.VerdictDrop))
	}
	set := t.learnedSet(n)
	rule(c, ch, []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name},
	}, verdict(expr.VerdictAccept))
	for _, p := range pol.denyNets {
		rule(c, ch, daddrIn(p), verdict(expr.VerdictDrop))
	}
	if pol.defaultAccept() {
		rule(c, ch, verdict(expr.VerdictAccept))
	} else {
		rule(c, ch, verdict(expr.VerdictDrop))
	}
}

// setSlotPolicy replaces slot n's rules and empties its learned set.
func (t *table) setSlotPolicy(c *nftables.Conn, n int, pol compiled) {
	ch := t.slotChain(n)
	c.FlushChain(ch)
	c.FlushSet(t.learnedSet(n))
	t.slotRules(c, ch, n, pol)
	nat := t.natChain(n)
	c.FlushChain(nat)
	t.natRules(c, nat, n, pol)
}

// removeSlot removes slot n's map entry, chain and set.
func (t *table) removeSlot(c *nftables.Conn, n int) error {
	if err := c.SetDeleteElements(t.chains, []nftables.SetElement{{Key: ifname(t.ifName(n))}}); err != nil {
		return err
	}
	if err := c.SetDeleteElements(t.nats, []nftables.SetElement{{Key: ifname(t.ifName(n))}}); err != nil {
		return err
	}
	ch := t.slotChain(n)
	c.FlushChain(ch)
	c.DelChain(ch)
	nat := t.natChain(n)
	c.FlushChain(nat)
	c.DelChain(nat)
	c.DelSet(t.learnedSet(n))
	return nil
}

// learn adds addrs to slot n's learned set for ttl.
func (t *table) learn(c *nftables.Conn, n int, addrs []netip.Addr, ttl time.Duration) error {
	var elems []nftables.SetElement
	for _, a := range addrs {
		if a.Is4() {
			b := a.As4()
			elems = append(elems, nftables.SetElement{Key: b[:], Timeout: ttl})
		}
	}
	if len(elems) == 0 {
		return nil
	}
	return c.SetAddElements(t.learnedSet(n), elems)
}

func (t *table) ifName(n int) string { return fmt.Sprintf("%s%d", t.prefix, n) }

// Expression helpers.

func rule(c *nftables.Conn, ch *nftables.Chain, parts ...[]expr.Any) {
	var exprs []expr.Any
	for _, p := range parts {
		exprs = append(exprs, p...)
	}
	c.AddRule(&nftables.Rule{Table: ch.Table, Chain: ch, Exprs: exprs})
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

func jump(chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}
}

// ifname is name as an nftables ifname: NUL-padded to 16 bytes.
func ifname(name string) []byte {
	b := make([]byte, 16)
	copy(b, name)
	return b
}

// iifPrefix matches input interfaces whose name starts with prefix: cmp
// compares as many bytes as it is given.
func iifPrefix(prefix string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(prefix)},
	}
}

func oifPrefix(prefix string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(prefix)},
	}
}

func oifNotPrefix(prefix string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte(prefix)},
	}
}

func nfproto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

func dport(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

func ctEstablished() []expr.Any {
	mask := binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED)
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// addrMatch compares the IPv4 address at offset (12 source, 16
// destination) with p.
func addrMatch(offset uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
	addr := p.Masked().Addr().As4()
	mask := netMask(p.Bits())
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask[:], Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: addr[:]},
	}
}

func netMask(bits int) [4]byte {
	var m [4]byte
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

func daddrIn(p netip.Prefix) []expr.Any { return addrMatch(16, p, expr.CmpOpEq) }
func saddrIn(p netip.Prefix) []expr.Any { return addrMatch(12, p, expr.CmpOpEq) }
func daddrIs(a netip.Addr) []expr.Any   { return daddrIn(netip.PrefixFrom(a, 32)) }
func saddrNot(a netip.Addr) []expr.Any  { return addrMatch(12, netip.PrefixFrom(a, 32), expr.CmpOpNeq) }
