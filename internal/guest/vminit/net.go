//go:build linux

package vminit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// NetArg is the kernel command line parameter of a VM with a NIC:
// "den.net=<address>/<bits>,<gateway>,<DNS server>". eth0 gets the
// address and the default route, and /etc/resolv.conf the DNS server.
// Without it the VM has no NIC and init configures none.
const NetArg = "den.net"

// nicWait bounds the wait for eth0 to appear (virtio-net probes it when
// its module loads).
const nicWait = 10 * time.Second

// netConfig is a parsed NetArg.
type netConfig struct {
	addr    netip.Prefix
	gateway netip.Addr
	dns     netip.Addr
}

// FormatNetArg is the NetArg parameter for eth0 at addr, the default
// route via gateway and the DNS server dns.
func FormatNetArg(addr netip.Prefix, gateway, dns netip.Addr) string {
	return NetArg + "=" + addr.String() + "," + gateway.String() + "," + dns.String()
}

// parseNetArg parses NetArg's value.
func parseNetArg(v string) (*netConfig, error) {
	parts := strings.Split(v, ",")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%s=%q: want <address>/<bits>,<gateway>,<dns>", NetArg, v)
	}
	var nc netConfig
	var errs [3]error
	nc.addr, errs[0] = netip.ParsePrefix(parts[0])
	nc.gateway, errs[1] = netip.ParseAddr(parts[1])
	nc.dns, errs[2] = netip.ParseAddr(parts[2])
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("%s=%q: %w", NetArg, v, err)
	}
	if !nc.addr.Addr().Is4() || !nc.gateway.Is4() || !nc.dns.Is4() {
		return nil, fmt.Errorf("%s=%q: IPv4 addresses only", NetArg, v)
	}
	return &nc, nil
}

// networkUp configures eth0 (address, up, default route) and writes
// /etc/resolv.conf when the command line has NetArg. It runs after the
// root switch: resolv.conf is the root disk's.
func (b *boot) networkUp() error {
	if b.net == nil {
		return nil
	}
	idx, err := waitLink("eth0", nicWait)
	if err != nil {
		return err
	}
	if err := rtnetlink(unix.RTM_NEWADDR, addrMsg(idx, b.net.addr)); err != nil {
		return fmt.Errorf("address eth0: %w", err)
	}
	if err := linkUp("eth0"); err != nil {
		return err
	}
	if err := rtnetlink(unix.RTM_NEWROUTE, defaultRouteMsg(idx, b.net.gateway)); err != nil {
		return fmt.Errorf("default route: %w", err)
	}
	return writeResolvConf("/etc/resolv.conf", b.net.dns)
}

// waitLink waits for interface name and returns its index.
func waitLink(name string, wait time.Duration) (int, error) {
	deadline := time.Now().Add(wait)
	for {
		data, err := os.ReadFile("/sys/class/net/" + name + "/ifindex")
		if err == nil {
			var idx int
			if _, err := fmt.Sscan(string(data), &idx); err != nil {
				return 0, fmt.Errorf("ifindex of %s: %w", name, err)
			}
			return idx, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s did not appear within %s", name, wait)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// writeResolvConf makes path (a file; a link there, as images often have,
// is replaced) name dns as the only resolver.
func writeResolvConf(path string, dns netip.Addr) error {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if err := os.Remove(path); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte("nameserver "+dns.String()+"\noptions edns0\n"), 0o644)
}

// addrMsg is an RTM_NEWADDR body: a (primary) address on interface idx.
func addrMsg(idx int, p netip.Prefix) []byte {
	msg := make([]byte, unix.SizeofIfAddrmsg)
	msg[0] = unix.AF_INET
	msg[1] = byte(p.Bits())
	msg[3] = unix.RT_SCOPE_UNIVERSE
	binary.NativeEndian.PutUint32(msg[4:], uint32(idx))
	a := p.Addr().As4()
	msg = appendAttr(msg, unix.IFA_LOCAL, a[:])
	return appendAttr(msg, unix.IFA_ADDRESS, a[:])
}

// defaultRouteMsg is an RTM_NEWROUTE body: the default route via gw on
// interface idx.
func defaultRouteMsg(idx int, gw netip.Addr) []byte {
	msg := make([]byte, unix.SizeofRtMsg)
	msg[0] = unix.AF_INET
	msg[4] = unix.RT_TABLE_MAIN
	msg[5] = unix.RTPROT_BOOT
	msg[6] = unix.RT_SCOPE_UNIVERSE
	msg[7] = unix.RTN_UNICAST
	g := gw.As4()
	msg = appendAttr(msg, unix.RTA_GATEWAY, g[:])
	var oif [4]byte
	binary.NativeEndian.PutUint32(oif[:], uint32(idx))
	return appendAttr(msg, unix.RTA_OIF, oif[:])
}

// appendAttr appends a route attribute (padded to 4 bytes) to msg.
func appendAttr(msg []byte, typ uint16, data []byte) []byte {
	var hdr [unix.SizeofRtAttr]byte
	binary.NativeEndian.PutUint16(hdr[0:], uint16(unix.SizeofRtAttr+len(data)))
	binary.NativeEndian.PutUint16(hdr[2:], typ)
	msg = append(append(msg, hdr[:]...), data...)
	for len(msg)%4 != 0 {
		msg = append(msg, 0)
	}
	return msg
}

// rtnetlink sends one request of type typ (creating, replacing what is
// there) with body and waits for its acknowledgement.
func rtnetlink(typ uint16, body []byte) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	hdr := make([]byte, unix.SizeofNlMsghdr)
	binary.NativeEndian.PutUint32(hdr[0:], uint32(unix.SizeofNlMsghdr+len(body)))
	binary.NativeEndian.PutUint16(hdr[4:], typ)
	binary.NativeEndian.PutUint16(hdr[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_REPLACE)
	binary.NativeEndian.PutUint32(hdr[8:], 1) // sequence
	if err := unix.Sendto(fd, append(hdr, body...), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
				return unix.Errno(-code)
			}
			return nil
		}
	}
}

// linkUp brings up interface name.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("flags of %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up %s: %w", name, err)
	}
	return nil
}
