package e2e

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/denhq/den/internal/sandboxnet"
)

// hostNS is a network namespace that plays a separate host: its own
// address on a veth to this machine, and a firewall that refuses every
// inbound connection (only replies to its own outbound ones get in), as
// a node behind NAT would.
type hostNS struct {
	path     string
	addr     netip.Addr // the namespace's own address
	hostAddr netip.Addr // this machine's end of the veth
}

// newHostNS makes host number i (0-200) for t, removed when t ends.
func newHostNS(t *testing.T, i int) hostNS {
	t.Helper()
	h := hostNS{
		path:     filepath.Join(t.TempDir(), "netns"),
		addr:     netip.AddrFrom4([4]byte{10, 231, byte(i), 2}),
		hostAddr: netip.AddrFrom4([4]byte{10, 231, byte(i), 1}),
	}
	removeLink(fmt.Sprintf("denhost%d", i)) // a crashed run's
	must(t, sandboxnet.NewNetns(h.path))
	t.Cleanup(func() { sandboxnet.RemoveNetns(h.path) })
	ns, err := netns.GetFromPath(h.path)
	must(t, err)
	defer ns.Close()
	name := fmt.Sprintf("denhost%d", i)
	must(t, netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}))
	t.Cleanup(func() { removeLink(name) })
	l, err := netlink.LinkByName(name)
	must(t, err)
	must(t, netlink.AddrAdd(l, ipv4Addr(h.hostAddr, 24)))
	must(t, netlink.LinkSetUp(l))
	nh, err := netlink.NewHandleAt(ns)
	must(t, err)
	defer nh.Close()
	eth, err := nh.LinkByName("eth0")
	must(t, err)
	must(t, nh.AddrAdd(eth, ipv4Addr(h.addr, 24)))
	must(t, nh.LinkSetUp(eth))
	lo, err := nh.LinkByName("lo")
	must(t, err)
	must(t, nh.LinkSetUp(lo))
	must(t, nh.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.IP(h.hostAddr.AsSlice())}))
	must(t, sandboxnet.InNetns(h.path, blockInbound))
	return h
}

// blockInbound installs, in the current network namespace, an input
// chain that drops every new TCP connection from outside (loopback and
// replies pass).
func blockInbound() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	tab := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "den_test_host"})
	accept := nftables.ChainPolicyAccept
	in := c.AddChain(&nftables.Chain{Table: tab, Name: "input", Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput,
		Priority: nftables.ChainPriorityFilter, Policy: &accept})
	// iifname "lo" accept
	c.AddRule(&nftables.Rule{Table: tab, Chain: in, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("lo")},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}})
	// ct state new meta l4proto tcp drop
	c.AddRule(&nftables.Rule{Table: tab, Chain: in, Exprs: []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: le32(expr.CtStateBitNEW), Xor: le32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: le32(0)},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{6}},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	return c.Flush()
}

func le32(v uint32) []byte {
	return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}
}

func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}

func ipv4Addr(a netip.Addr, bits int) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(bits, 32)}}
}

func removeLink(name string) {
	if l, err := netlink.LinkByName(name); err == nil {
		netlink.LinkDel(l)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// command runs bin with args inside the namespace.
func (h hostNS) command(bin string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + h.path, "--", bin}, args...)...)
}

// TestHostNSRefusesInbound checks the harness itself: a host namespace
// reaches this machine, and this machine cannot connect into it.
func TestHostNSRefusesInbound(t *testing.T) {
	denBin(t) // root and the build, as every e2e test
	h := newHostNS(t, 250)
	// A listener on this machine, reached from inside.
	l, err := net.Listen("tcp", net.JoinHostPort(h.hostAddr.String(), "0"))
	must(t, err)
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello from the server\n"))
			c.Close()
		}
	}()
	var got []byte
	must(t, sandboxnet.InNetns(h.path, func() error {
		c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		got, err = io.ReadAll(c)
		return err
	}))
	if string(got) != "hello from the server\n" {
		t.Fatalf("outbound from the host namespace read %q", got)
	}
	// A listener inside, not reachable from here.
	var inner net.Listener
	must(t, sandboxnet.InNetns(h.path, func() (err error) {
		inner, err = net.Listen("tcp", net.JoinHostPort(h.addr.String(), "7777"))
		return err
	}))
	defer inner.Close()
	go func() {
		if c, err := inner.Accept(); err == nil {
			c.Close()
		}
	}()
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(h.addr.String(), "7777"), 2*time.Second); err == nil {
		c.Close()
		t.Fatal("connected into a host namespace that refuses inbound connections")
	}
}
