package sandboxnet_test

import (
	"net"
	"os"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/sandboxnet"
)

// TestOpenTap checks a microVM's tap: it is in the sandbox's namespace at
// the gateway address, up, while its descriptor is open, and gone after;
// the namespace forwards; a second open makes it again.
func TestOpenTap(t *testing.T) {
	m := openTest(t)
	nt, err := m.Setup("vm", sandboxnet.DefaultPolicy())
	must(t, err)
	if _, err := m.OpenTap("none"); !errdefs.IsNotFound(err) || err.Error() != "none has no network" {
		t.Fatalf("OpenTap of an ID without a network: %v, want NotFound %q", err, "none has no network")
	}
	for i := range 2 { // the second: after the first tap went
		tap, err := m.OpenTap("vm")
		if err != nil {
			t.Fatalf("OpenTap #%d: %v", i+1, err)
		}
		must(t, sandboxnet.InNetns(nt.Netns, func() error {
			l, err := netlink.LinkByName(sandboxnet.VMTap)
			if err != nil {
				return err
			}
			if l.Type() != "tuntap" || l.Attrs().Flags&net.FlagUp == 0 {
				t.Errorf("%s: type %s, flags %v; want an up tuntap", sandboxnet.VMTap, l.Type(), l.Attrs().Flags)
			}
			if mac := l.Attrs().HardwareAddr.String(); mac != "52:54:00:de:0e:02" {
				t.Errorf("%s's MAC = %s, want the same on every tap", sandboxnet.VMTap, mac)
			}
			addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
			if err != nil {
				return err
			}
			want := sandboxnet.VMGateway.String() + "/30"
			if len(addrs) != 1 || addrs[0].IPNet.String() != want {
				t.Errorf("%s's addresses: %v, want %s", sandboxnet.VMTap, addrs, want)
			}
			fwd, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
			if err != nil {
				return err
			}
			if string(fwd) != "1\n" {
				t.Errorf("ip_forward in the namespace = %q, want 1", fwd)
			}
			return nil
		}))
		must(t, tap.Close())
		must(t, sandboxnet.InNetns(nt.Netns, func() error {
			if _, err := netlink.LinkByName(sandboxnet.VMTap); err == nil {
				t.Errorf("%s is still there after its descriptor was closed", sandboxnet.VMTap)
			}
			return nil
		}))
	}
}
