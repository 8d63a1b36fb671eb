package sandboxnet

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/errdefs"
)

// slotBits is the size of a slot: a /30.
const slotBits = 30

// slots is the number of slots in the /16, slot 0 included.
const slots = 1 << (slotBits - 16)

// slotAddr is address i (0-3) of slot n of cidr.
func slotAddr(cidr netip.Prefix, n, i int) netip.Addr {
	b := cidr.Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) + uint32(n)<<2 + uint32(i)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// dnsAddr is den's resolver address in cidr: slot 0's .1.
func dnsAddr(cidr netip.Prefix) netip.Addr { return slotAddr(cidr, 0, 1) }

// pickCIDR returns the first /16 of 10.88.0.0 ... 10.127.0.0 that no
// route or address of the host overlaps (another den's DNS address on lo
// marks its /16). Callers hold the host-wide lock (lockHost).
func pickCIDR() (netip.Prefix, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("list host routes: %w", err)
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("list host addresses: %w", err)
	}
	var used []netip.Prefix
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet.String()); ok {
			used = append(used, p)
		}
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue // the default route
		}
		if p, ok := prefixOf(r.Dst.String()); ok && p.Bits() > 0 {
			used = append(used, p)
		}
	}
	for second := 88; second < 128; second++ {
		cand := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(second), 0, 0}), 16)
		free := true
		for _, u := range used {
			if u.Overlaps(cand) {
				free = false
				break
			}
		}
		if free {
			return cand, nil
		}
	}
	return netip.Prefix{}, errdefs.New(errdefs.FailedPrecondition, "no free /16 in 10.88.0.0-10.127.255.255 for sandbox networks: set --sandbox-cidr")
}

func prefixOf(s string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(s)
	return p, err == nil && p.Addr().Is4()
}

// hostLock serialises the choice of CIDRs between the dens of a host.
const hostLock = "/run/den-sandboxnet.lock"

// lockHost takes the host-wide lock; the returned func releases it.
func lockHost() (func(), error) {
	f, err := os.OpenFile(hostLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", hostLock, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", hostLock, err)
	}
	return func() { f.Close() }, nil
}

// record is what the state directory keeps of a slot: slots/<n>.json.
type record struct {
	ID     string `json:"id"`
	Policy Policy `json:"policy"`
}

// netConfig is the manager's own record: config.json.
type netConfig struct {
	CIDR string `json:"cidr"`
}

func (m *Manager) recordPath(n int) string {
	return filepath.Join(m.cfg.StateDir, "slots", strconv.Itoa(n)+".json")
}

func (m *Manager) nsPath(n int) string {
	return filepath.Join(m.cfg.StateDir, "ns", strconv.Itoa(n))
}

// writeRecord writes slot n's record (write to a temporary name, rename).
func (m *Manager) writeRecord(n int, r record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	p := m.recordPath(n)
	if err := os.WriteFile(p+".tmp", data, 0o600); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

// Recorded returns the IDs the slot records on disk name: the networks a
// restart would find.
func (m *Manager) Recorded() ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	recs, err := m.readRecords()
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(recs))
	for _, r := range recs {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return ids, nil
}

// readRecords reads every slot record.
func (m *Manager) readRecords() (map[int]record, error) {
	entries, err := os.ReadDir(filepath.Join(m.cfg.StateDir, "slots"))
	if err != nil {
		return nil, err
	}
	out := map[int]record{}
	for _, e := range entries {
		name, ok := cutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(name)
		if err != nil || n <= 0 || n >= slots {
			continue
		}
		data, err := os.ReadFile(filepath.Join(m.cfg.StateDir, "slots", e.Name()))
		if err != nil {
			return nil, err
		}
		var r record
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("slot record %s: %w", e.Name(), err)
		}
		out[n] = r
	}
	return out, nil
}

func cutSuffix(s, suffix string) (string, bool) {
	if len(s) > len(suffix) && s[len(s)-len(suffix):] == suffix {
		return s[:len(s)-len(suffix)], true
	}
	return s, false
}

// loadConfig reads config.json, or picks a CIDR (cfg's, else a free one)
// and writes it on a first start. A configured CIDR that differs from the
// recorded one is an error while slots exist.
func (m *Manager) loadConfig(want netip.Prefix) (netip.Prefix, error) {
	p := filepath.Join(m.cfg.StateDir, "config.json")
	data, err := os.ReadFile(p)
	if err == nil {
		var c netConfig
		if err := json.Unmarshal(data, &c); err != nil {
			return netip.Prefix{}, fmt.Errorf("%s: %w", p, err)
		}
		rec, err := netip.ParsePrefix(c.CIDR)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%s: %w", p, err)
		}
		if want.IsValid() && want != rec {
			recs, _ := m.readRecords()
			if len(recs) > 0 {
				return netip.Prefix{}, errdefs.New(errdefs.FailedPrecondition, "sandbox networks use %s; %d sandboxes have addresses in it: destroy them before moving to %s", rec, len(recs), want)
			}
		} else {
			return rec, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return netip.Prefix{}, err
	}
	cidr := want
	if !cidr.IsValid() {
		if cidr, err = pickCIDR(); err != nil {
			return netip.Prefix{}, err
		}
	}
	data, _ = json.Marshal(netConfig{CIDR: cidr.String()})
	if err := os.WriteFile(p+".tmp", data, 0o600); err != nil {
		return netip.Prefix{}, err
	}
	return cidr, os.Rename(p+".tmp", p)
}
