package sandboxnet

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/sandboxnet/dnsfilter"
)

// Config configures a Manager.
type Config struct {
	// StateDir holds the slot records and the pinned namespaces. Required.
	StateDir string
	// CIDR is the /16 of sandbox addresses; zero picks one (see the
	// package comment) on a first start.
	CIDR   netip.Prefix
	Logger *slog.Logger
}

// Net is a sandbox's network, what a driver needs to attach it.
type Net struct {
	// Netns is the path of the pinned network namespace.
	Netns string
	// Addr is eth0's address in the namespace, with its /30.
	Addr netip.Prefix
	// Gateway is the host end, the namespace's default route.
	Gateway netip.Addr
	// DNS is den's resolver, for the sandbox's resolv.conf.
	DNS netip.Addr
	// HostIf is the host end's interface name.
	HostIf string
}

// Manager makes and removes sandbox networks; it is safe for concurrent
// use.
type Manager struct {
	cfg  Config
	log  *slog.Logger
	inst string
	cidr netip.Prefix

	mu    sync.Mutex
	ids   map[string]int     // slot by ID; guarded by mu
	slots map[int]*slotState // guarded by mu
	tab   *table
	// resolver is den's DNS server, once started, and check its name
	// check (namecheck.go); guarded by mu.
	resolver *dnsfilter.Server
	check    *nameCheck
	// nftTxs counts nftables transactions (tests check what skips them).
	nftTxs atomic.Int64
}

// slotState is a slot in use.
type slotState struct {
	id     string
	policy Policy
	c      compiled
	// learned are the addresses the resolver opened, by name, so that a
	// policy change keeps those of names it still allows and drops the
	// rest at once.
	learned map[string]learnedAddrs
}

// learnedAddrs are a name's addresses and when they close.
type learnedAddrs struct {
	addrs []netip.Addr
	until time.Time
}

// Open prepares the host (IPv4 forwarding, the DNS address, the nftables
// table) and loads the slots recorded in
// cfg.StateDir. It needs CAP_NET_ADMIN.
func Open(cfg Config) (*Manager, error) {
	if cfg.StateDir == "" || !filepath.IsAbs(cfg.StateDir) {
		return nil, errdefs.New(errdefs.InvalidArgument, "sandbox network: StateDir must be an absolute path")
	}
	if cfg.CIDR.IsValid() && (!cfg.CIDR.Addr().Is4() || cfg.CIDR.Bits() != 16) {
		return nil, errdefs.New(errdefs.InvalidArgument, "sandbox network: the CIDR must be an IPv4 /16, got %s", cfg.CIDR)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{"slots", "ns"} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, d), 0o700); err != nil {
			return nil, fmt.Errorf("sandbox network: %w", err)
		}
	}
	sum := sha256.Sum256([]byte(cfg.StateDir))
	m := &Manager{cfg: cfg, log: cfg.Logger.With("component", "sandboxnet"), inst: hex.EncodeToString(sum[:2]),
		ids: map[string]int{}, slots: map[int]*slotState{}}
	unlock, err := lockHost()
	if err != nil {
		return nil, fmt.Errorf("sandbox network: %w", err)
	}
	defer unlock()
	if m.cidr, err = m.loadConfig(cfg.CIDR.Masked()); err != nil {
		return nil, fmt.Errorf("sandbox network: %w", err)
	}
	recs, err := m.readRecords()
	if err != nil {
		return nil, fmt.Errorf("sandbox network: %w", err)
	}
	compiledSlots := map[int]compiled{}
	for n, r := range recs {
		c, err := r.Policy.compile()
		if err != nil {
			return nil, fmt.Errorf("sandbox network: slot %d: %w", n, err)
		}
		m.ids[r.ID] = n
		m.slots[n] = &slotState{id: r.ID, policy: r.Policy, c: c}
		compiledSlots[n] = c
	}
	if err := writeSysctl("net/ipv4/ip_forward", "1"); err != nil {
		return nil, fmt.Errorf("sandbox network: turn on IPv4 forwarding: %w", err)
	}
	if err := m.ensureDNSAddr(); err != nil {
		return nil, fmt.Errorf("sandbox network: %w", err)
	}
	m.tab = m.newTable()
	if err := m.nft(func(c *nftables.Conn) error { return m.tab.build(c, compiledSlots) }); err != nil {
		return nil, fmt.Errorf("sandbox network: nftables: %w", err)
	}
	return m, nil
}

// CIDR is the /16 the sandboxes' addresses come from.
func (m *Manager) CIDR() netip.Prefix { return m.cidr }

// DNS is the address of den's resolver.
func (m *Manager) DNS() netip.Addr { return dnsAddr(m.cidr) }

func (m *Manager) ifPrefix() string { return "dn" + m.inst + "-" }

// nft runs fn on a new nftables connection and sends its batch.
func (m *Manager) nft(fn func(c *nftables.Conn) error) error {
	m.nftTxs.Add(1)
	c, err := nftables.New()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	if err := fn(c); err != nil {
		return err
	}
	return c.Flush()
}

// ensureDNSAddr puts the DNS address on the host's loopback interface
// (a dummy interface would do, but not every kernel has the module): a
// sandbox's packets to it are delivered locally, where the input chain
// lets only port 53 through.
func (m *Manager) ensureDNSAddr() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	addr := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(m.DNS(), 32))}
	if err := netlink.AddrReplace(lo, addr); err != nil {
		return fmt.Errorf("add the DNS address %s to lo: %w", m.DNS(), err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// netOf is slot n's Net.
func (m *Manager) netOf(n int) Net {
	return Net{Netns: m.nsPath(n), Addr: netip.PrefixFrom(slotAddr(m.cidr, n, 2), slotBits),
		Gateway: slotAddr(m.cidr, n, 1), DNS: m.DNS(), HostIf: m.tab.ifName(n)}
}

// Get returns id's network.
func (m *Manager) Get(id string) (Net, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.ids[id]
	if !ok {
		return Net{}, false
	}
	return m.netOf(n), true
}

// IDs lists the IDs that have a network.
func (m *Manager) IDs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.ids))
	for id := range m.ids {
		out = append(out, id)
	}
	return out
}

// Setup gives id a network with policy pol: a namespace with eth0 up at
// its address, lo up and a default route, the host end up, and the
// policy's rules. An id that has one gets it back unchanged.
func (m *Manager) Setup(id string, pol Policy) (Net, error) {
	pol, err := pol.Normalize()
	if err != nil {
		return Net{}, err
	}
	c, _ := pol.compile() // normalized: cannot fail
	m.mu.Lock()
	defer m.mu.Unlock()
	if n, ok := m.ids[id]; ok {
		return m.netOf(n), nil
	}
	n := 0
	for i := 1; i < slots; i++ {
		if _, used := m.slots[i]; !used {
			n = i
			break
		}
	}
	if n == 0 {
		return Net{}, errdefs.New(errdefs.ResourceExhausted, "no free sandbox address in %s", m.cidr)
	}
	// The record first: a crash after it leaves a slot Teardown or the
	// next Setup of the ID cleans up.
	if err := m.writeRecord(n, record{ID: id, Policy: pol}); err != nil {
		return Net{}, fmt.Errorf("network of %s: %w", id, err)
	}
	nt := m.netOf(n)
	if err := m.plumb(n, nt); err != nil {
		m.unplumb(n)
		os.Remove(m.recordPath(n))
		return Net{}, fmt.Errorf("network of %s: %w", id, err)
	}
	if err := m.nft(func(conn *nftables.Conn) error { return m.tab.addSlot(conn, n, c) }); err != nil {
		m.unplumb(n)
		os.Remove(m.recordPath(n))
		return Net{}, fmt.Errorf("network of %s: nftables: %w", id, err)
	}
	m.ids[id] = n
	m.slots[n] = &slotState{id: id, policy: pol, c: c}
	return nt, nil
}

// plumb makes slot n's namespace and veth pair.
func (m *Manager) plumb(n int, nt Net) error {
	m.unplumb(n) // leftovers of a crash
	if err := NewNetns(nt.Netns); err != nil {
		return err
	}
	ns, err := netns.GetFromPath(nt.Netns)
	if err != nil {
		return err
	}
	defer ns.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: nt.HostIf, MTU: 1500}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s: %w", nt.HostIf, err)
	}
	host, err := netlink.LinkByName(nt.HostIf)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(host, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(nt.Gateway, slotBits))}); err != nil {
		return fmt.Errorf("address %s: %w", nt.HostIf, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return err
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	for _, name := range []string{"lo", "eth0"} {
		l, err := h.LinkByName(name)
		if err != nil {
			return err
		}
		if name == "eth0" {
			if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipNet(nt.Addr)}); err != nil {
				return fmt.Errorf("address eth0: %w", err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			return err
		}
		if name == "eth0" {
			if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.IP(nt.Gateway.AsSlice())}); err != nil {
				return fmt.Errorf("default route: %w", err)
			}
		}
	}
	return nil
}

// unplumb removes slot n's namespace (its eth0 goes with it, and the
// host end with its peer) and host interface; what is missing is skipped.
func (m *Manager) unplumb(n int) {
	if l, err := netlink.LinkByName(m.tab.ifName(n)); err == nil {
		_ = netlink.LinkDel(l)
	}
	if err := RemoveNetns(m.nsPath(n)); err != nil {
		m.log.Warn("remove sandbox netns", "slot", n, "err", err)
	}
}

// Rename moves from's network to to (a claimed spare). NotFound when from
// has none; AlreadyExists when to has one.
func (m *Manager) Rename(from, to string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.movable(from, to)
	if err != nil {
		return err
	}
	s := m.slots[n]
	if err := m.writeRecord(n, record{ID: to, Policy: s.policy}); err != nil {
		return fmt.Errorf("rename network of %s: %w", from, err)
	}
	delete(m.ids, from)
	m.ids[to] = n
	s.id = to
	return nil
}

// Move is Rename without the write of the slot's record, which it returns
// as persist for the caller to run when it likes (a claim runs it after it
// has answered). Until persist runs, a restart finds the network under
// from. persist writes the slot's state at the time it runs, so a later
// policy change or teardown is never undone by it.
func (m *Manager) Move(from, to string) (persist func() error, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.movable(from, to)
	if err != nil {
		return nil, err
	}
	delete(m.ids, from)
	m.ids[to] = n
	m.slots[n].id = to
	return func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		if cur, ok := m.ids[to]; !ok || cur != n {
			return nil // torn down or moved on: its record is written
		}
		if err := m.writeRecord(n, record{ID: to, Policy: m.slots[n].policy}); err != nil {
			return fmt.Errorf("record network of %s: %w", to, err)
		}
		return nil
	}, nil
}

// movable returns the slot of from's network, which may become to's:
// NotFound when from has none, AlreadyExists when to has one.
// Preconditions: m.mu is held.
func (m *Manager) movable(from, to string) (int, error) {
	n, ok := m.ids[from]
	if !ok {
		return 0, errdefs.New(errdefs.NotFound, "%s has no network", from)
	}
	if _, ok := m.ids[to]; ok {
		return 0, errdefs.New(errdefs.AlreadyExists, "%s has a network", to)
	}
	return n, nil
}

// Policy returns id's policy.
func (m *Manager) Policy(id string) (Policy, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.ids[id]
	if !ok {
		return Policy{}, errdefs.New(errdefs.NotFound, "%s has no network", id)
	}
	return m.slots[n].policy, nil
}

// SetPolicy replaces id's policy; new connections follow it at once.
// Addresses learned for names it still allows stay until their TTL ends;
// the others close now.
func (m *Manager) SetPolicy(id string, pol Policy) error {
	pol, err := pol.Normalize()
	if err != nil {
		return err
	}
	c, _ := pol.compile()
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.ids[id]
	if !ok {
		return errdefs.New(errdefs.NotFound, "%s has no network", id)
	}
	if samePolicy(m.slots[n].policy, pol) {
		// Nothing changes (a claimed spare usually keeps the default
		// policy it booted with): skip the nftables transaction, which
		// costs ~10 ms here.
		return nil
	}
	if err := m.writeRecord(n, record{ID: id, Policy: pol}); err != nil {
		return fmt.Errorf("network policy of %s: %w", id, err)
	}
	s := m.slots[n]
	// The learned addresses of names the new policy still allows stay,
	// the others go with the old rules, in one batch.
	now := time.Now()
	keep := map[string]learnedAddrs{}
	for name, l := range s.learned {
		if now.Before(l.until) && c.nameAllowed(name) && c.learns() {
			keep[name] = l
		}
	}
	err = m.nft(func(conn *nftables.Conn) error {
		m.tab.setSlotPolicy(conn, n, c)
		for _, l := range keep {
			if err := m.tab.learn(conn, n, l.addrs, l.until.Sub(now)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("network policy of %s: nftables: %w", id, err)
	}
	s.policy, s.c, s.learned = pol, c, keep
	return nil
}

// samePolicy reports whether two normalized policies are the same.
func samePolicy(a, b Policy) bool {
	return a.Internet == b.Internet && slices.Equal(a.Allow, b.Allow) && slices.Equal(a.Deny, b.Deny)
}

// Teardown removes id's network; none is no error.
func (m *Manager) Teardown(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.ids[id]
	if !ok {
		return nil
	}
	if err := m.nft(func(conn *nftables.Conn) error { return m.tab.removeSlot(conn, n) }); err != nil {
		m.log.Warn("remove sandbox network rules", "sandbox", id, "err", err)
	}
	m.unplumb(n)
	if err := os.Remove(m.recordPath(n)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove network of %s: %w", id, err)
	}
	delete(m.ids, id)
	delete(m.slots, n)
	return nil
}

// client is the resolver's view of the sandbox at address a.
func (m *Manager) client(a netip.Addr) (n int, id string, c compiled, ok bool) {
	if !m.cidr.Contains(a) {
		return 0, "", compiled{}, false
	}
	b := a.As4()
	base := m.cidr.Addr().As4()
	off := (uint32(b[2])<<8 | uint32(b[3])) - (uint32(base[2])<<8 | uint32(base[3]))
	n = int(off >> 2)
	if off&3 != 2 || n == 0 {
		return 0, "", compiled{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.slots[n]
	if !ok {
		return 0, "", compiled{}, false
	}
	return n, s.id, s.c, true
}

// learn lets slot n reach addrs for ttl, if the slot still belongs to id.
func (m *Manager) learn(n int, id, name string, addrs []netip.Addr, ttl time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.slots[n]
	if !ok || s.id != id {
		return
	}
	now := time.Now()
	if s.learned == nil {
		s.learned = map[string]learnedAddrs{}
	}
	for name, l := range s.learned {
		if now.After(l.until) {
			delete(s.learned, name)
		}
	}
	s.learned[name] = learnedAddrs{addrs: addrs, until: now.Add(ttl)}
	if err := m.nft(func(c *nftables.Conn) error { return m.tab.learn(c, n, addrs, ttl) }); err != nil {
		m.log.Warn("add learned addresses", "slot", n, "err", err)
	}
}

// Remove tears down every network and removes what Open made on the host:
// the nftables table and the DNS address (for tests, and for a den whose
// data is being deleted). IPv4 forwarding stays on.
func (m *Manager) Remove() error {
	var errs []error
	for _, id := range m.IDs() {
		errs = append(errs, m.Teardown(id))
	}
	errs = append(errs, m.Close()) // and removeHost, none being left
	return errors.Join(errs...)
}

// removeHost removes the nftables table and the DNS address.
func (m *Manager) removeHost() error {
	var errs []error
	if err := m.nft(func(c *nftables.Conn) error { c.DelTable(m.tab.t); return nil }); err != nil && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("remove the nftables table: %w", err))
	}
	if lo, err := netlink.LinkByName("lo"); err == nil {
		if err := netlink.AddrDel(lo, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(m.DNS(), 32))}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("remove the DNS address: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Readdress puts eth0's address and default route back in id's namespace.
// gVisor's runsc takes them off when it copies the interface into its own
// network stack, and a restore into the same namespace copies it again.
func (m *Manager) Readdress(id string) error {
	nt, ok := m.Get(id)
	if !ok {
		return errdefs.New(errdefs.NotFound, "%s has no network", id)
	}
	ns, err := netns.GetFromPath(nt.Netns)
	if err != nil {
		return fmt.Errorf("network of %s: %w", id, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("network of %s: %w", id, err)
	}
	defer h.Close()
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("network of %s: %w", id, err)
	}
	if err := h.AddrReplace(eth, &netlink.Addr{IPNet: ipNet(nt.Addr)}); err != nil {
		return fmt.Errorf("network of %s: address eth0: %w", id, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("network of %s: %w", id, err)
	}
	if err := h.RouteReplace(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.IP(nt.Gateway.AsSlice())}); err != nil {
		return fmt.Errorf("network of %s: default route: %w", id, err)
	}
	return nil
}

// ResolvConf is the resolv.conf of a sandbox network: den's resolver.
func (m *Manager) ResolvConf() string {
	return "nameserver " + m.DNS().String() + "\noptions edns0\n"
}
