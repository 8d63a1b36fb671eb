package sandboxnet

import (
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/errdefs"
)

// A microVM's network: the VM's NIC is a tap device in its sandbox's
// namespace, which routes between the tap and eth0 and masquerades the
// guest's packets as eth0's address, so the host's rules see the
// sandbox's own address as for any sandbox. The guest's side has the same
// address in every VM (VMGuestAddr, gateway VMGateway): a VM resumed or
// cloned into another sandbox's namespace needs no change in the guest.
//
//	table ip den_vm {
//	  chain postrouting { type nat hook postrouting priority 100
//	    oifname "eth0" masquerade }
//	}

var (
	// VMGuestAddr is the guest's eth0 address in every microVM.
	VMGuestAddr = netip.MustParsePrefix("172.31.255.254/30")
	// VMGateway is the guest's default route: the tap's address in the
	// sandbox's namespace.
	VMGateway = netip.MustParseAddr("172.31.255.253")
)

// VMTap is the tap device's name in a sandbox's namespace.
const VMTap = "tap0"

// vmGatewayMAC is the tap's MAC address, the same on every tap: a guest
// resumed or cloned onto a new tap has the old one's in its neighbour
// cache, and would send its packets to a MAC the new tap drops until the
// entry expires.
var vmGatewayMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0xde, 0x0e, 0x02}

// OpenTap makes sure id's namespace forwards and masquerades a microVM's
// packets, creates the tap device VMTap in it, at VMGateway and up, and
// returns the tap's descriptor, which the VM's QEMU takes. The tap is not
// persistent: it goes when the last copy of the descriptor is closed (the
// QEMU exits). NotFound when id has no network; an error when the tap
// exists (another QEMU has it).
func (m *Manager) OpenTap(id string) (*os.File, error) {
	nt, ok := m.Get(id)
	if !ok {
		return nil, errdefs.New(errdefs.NotFound, "%s has no network", id)
	}
	if err := vmMasquerade(nt.Netns); err != nil {
		return nil, fmt.Errorf("tap of %s: nftables: %w", id, err)
	}
	var tap *os.File
	err := InNetns(nt.Netns, func() error {
		// /proc/sys/net is the namespace of the thread that opens it.
		if err := writeSysctl("net/ipv4/ip_forward", "1"); err != nil {
			return fmt.Errorf("turn on IPv4 forwarding: %w", err)
		}
		var err error
		tap, err = createTap(VMTap)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tap of %s: %w", id, err)
	}
	return tap, nil
}

// createTap creates tap device name in the calling thread's namespace,
// gives it VMGateway and brings it up.
func createTap(name string) (*os.File, error) {
	// The device is made in the namespace the descriptor was opened in.
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		f.Close()
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(int(f.Fd()), unix.TUNSETIFF, ifr); err != nil {
		f.Close()
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	if err := tapUp(name); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func tapUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetHardwareAddr(l, vmGatewayMAC); err != nil {
		return fmt.Errorf("MAC of %s: %w", name, err)
	}
	if err := netlink.AddrReplace(l, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(VMGateway, VMGuestAddr.Bits()))}); err != nil {
		return fmt.Errorf("address %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring up %s: %w", name, err)
	}
	return nil
}

// vmMasquerade (re)makes the den_vm table in the namespace at path.
func vmMasquerade(path string) error {
	ns, err := os.Open(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Fd())))
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "den_vm"}
	c.AddTable(t)
	c.DelTable(t) // an earlier one: the batch leaves exactly one rule
	c.AddTable(t)
	post := c.AddChain(&nftables.Chain{Table: t, Name: "postrouting", Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: policy(nftables.ChainPolicyAccept)})
	rule(c, post, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("eth0")},
		&expr.Masq{},
	})
	return c.Flush()
}
