package drivertest

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/sandboxnet"
	"github.com/denhq/den/internal/sandboxnet/fakeinternet"
)

// Networks: a driver factory gives its drivers Networks(t), a sandbox
// network manager per test whose resolver asks the fake internet's DNS
// server; the network cases start the fake internet (fakeinternet) and
// check, from inside sandboxes, what their policies let through. Drivers
// without Capabilities().Network skip them.

var (
	networksMu sync.Mutex
	networks   = map[*testing.T]*sandboxnet.Manager{}
)

// Networks returns t's sandbox network manager, the same for every call
// with the same t; it is removed (every network, its rules) when t ends.
func Networks(t *testing.T) *sandboxnet.Manager {
	t.Helper()
	networksMu.Lock()
	defer networksMu.Unlock()
	if m, ok := networks[t]; ok {
		return m
	}
	m, err := sandboxnet.Open(sandboxnet.Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatalf("sandbox networks: %v", err)
	}
	if err := m.StartDNS([]string{fakeinternet.DNS + ":53"}); err != nil {
		m.Remove()
		t.Fatalf("sandbox DNS: %v", err)
	}
	networks[t] = m
	t.Cleanup(func() {
		networksMu.Lock()
		delete(networks, t)
		networksMu.Unlock()
		if err := m.Remove(); err != nil {
			t.Errorf("remove sandbox networks: %v", err)
		}
	})
	return m
}

// networkTests are the cases of Spec.Network.
func (s *suite) networkTests() []testCase {
	return []testCase{
		{"NetworkPolicy", s.testNetworkPolicy},
		{"NetworkSuspendResume", s.testNetworkSuspendResume},
		{"NetworkClone", s.testNetworkClone},
		{"NetworkPool", s.testNetworkPool},
	}
}

// networked returns a driver and a spec that asks for the default network,
// or skips t.
func (s *suite) networked(t *testing.T) (driver.Driver, driver.Spec, *sandboxnet.Manager, *fakeinternet.Internet) {
	t.Helper()
	d, spec := s.setup(t)
	if !d.Capabilities().Network {
		t.Skipf("driver %s gives sandboxes no network", d.Capabilities().Name)
	}
	in := fakeinternet.New(t)
	in.ServeDNS(t, map[string]string{"example.test": fakeinternet.WebA, "other.test": fakeinternet.WebB})
	pol := sandboxnet.DefaultPolicy()
	spec.Network = &pol
	return d, spec, Networks(t), in
}

// fetch asks host (an address, or a name den's resolver resolves) for
// http://host/ from sandbox id: the body, or "" when that failed (refused,
// no route, unknown name, timed out). It uses busybox nslookup and nc:
// Debian's static busybox wget crashes in its libc's name lookup.
func fetch(t *testing.T, ctx context.Context, d driver.Driver, id, host string) string {
	t.Helper()
	script := `n=` + host + ` h=` + host + `
case "$h" in *[a-z]*) h=$(nslookup "$h" 2>/dev/null | awk '/^Address/ {a=$NF} END {print a}') ;; esac
[ -n "$h" ] || exit 2
printf 'GET / HTTP/1.0\r\nHost: %s\r\n\r\n' "$n" | nc -w 3 "$h" 80 | sed '1,/^\r*$/d'`
	res, err := Shell(ctx, d, id, script)
	if err != nil {
		t.Fatalf("fetch %s in %s: %v", host, id, err)
	}
	if res.ExitCode != 0 {
		return ""
	}
	return strings.TrimSpace(res.Stdout)
}

// expectFetch checks which hosts sandbox id reaches: host → the body it
// answers, "" for none.
func expectFetch(t *testing.T, ctx context.Context, d driver.Driver, id, what string, want map[string]string) {
	t.Helper()
	for host, body := range want {
		if got := fetch(t, ctx, d, id, host); got != body {
			t.Errorf("%s: GET http://%s/ = %q, want %q", what, host, got, body)
		}
	}
}

// testNetworkPolicy checks a networked sandbox reaches the internet by
// address and by name, and that policy changes apply to it at once.
func (s *suite) testNetworkPolicy(t *testing.T) {
	d, spec, nets, _ := s.networked(t)
	ctx := testCtx(t)
	s.create(t, ctx, d, spec)
	a, b := fakeinternet.WebA, fakeinternet.WebB
	expectFetch(t, ctx, d, spec.ID, "default policy", map[string]string{
		a: fakeinternet.WebA, "example.test": fakeinternet.WebA,
		fakeinternet.Metadata: "",
	})
	if err := nets.SetPolicy(spec.ID, sandboxnet.Policy{}); err != nil {
		t.Fatal(err)
	}
	expectFetch(t, ctx, d, spec.ID, "internet off", map[string]string{a: "", "example.test": ""})
	if err := nets.SetPolicy(spec.ID, sandboxnet.Policy{Internet: false, Allow: []string{"example.test"}}); err != nil {
		t.Fatal(err)
	}
	expectFetch(t, ctx, d, spec.ID, "allow example.test", map[string]string{
		"example.test": fakeinternet.WebA, "other.test": "", b: "",
	})

	// A sandbox that asks for no network has none.
	plain := spec
	plain.ID, plain.Network = newID(t), nil
	s.create(t, ctx, d, plain)
	expectFetch(t, ctx, d, plain.ID, "no network", map[string]string{a: ""})
}

// testNetworkSuspendResume checks a resumed sandbox has its network back.
func (s *suite) testNetworkSuspendResume(t *testing.T) {
	d, spec, _, _ := s.networked(t)
	sd := suspender(t, d)
	ctx := testCtx(t)
	s.create(t, ctx, d, spec)
	expectFetch(t, ctx, d, spec.ID, "before suspend", map[string]string{"example.test": fakeinternet.WebA})
	dir := suspend(t, ctx, sd, spec.ID)
	resume(t, ctx, sd, spec, dir)
	expectFetch(t, ctx, d, spec.ID, "after resume", map[string]string{"example.test": fakeinternet.WebA})
}

// testNetworkClone checks a clone gets a network of its own: another
// address and its own policy. Its packets pass only its own network's
// rules (which drop any source address but its own), so reaching what its
// policy allows shows it uses its own address.
func (s *suite) testNetworkClone(t *testing.T) {
	d, spec, nets, _ := s.networked(t)
	sd := suspender(t, d)
	ctx := testCtx(t)
	s.create(t, ctx, d, spec)
	dir := checkpointDir(t)
	if err := sd.Checkpoint(ctx, spec.ID, dir); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	clone := spec
	clone.ID = newID(t)
	onlyB := sandboxnet.Policy{Allow: []string{fakeinternet.WebB}}
	clone.Network = &onlyB
	s.clone(t, ctx, d, clone, dir)
	src, _ := nets.Get(spec.ID)
	cn, ok := nets.Get(clone.ID)
	if !ok || cn.Addr == src.Addr || cn.Netns == src.Netns {
		t.Fatalf("clone's network %+v (%v), source's %+v: want one of its own", cn, ok, src)
	}
	expectFetch(t, ctx, d, clone.ID, "clone, only WebB", map[string]string{fakeinternet.WebB: fakeinternet.WebB, fakeinternet.WebA: ""})
	expectFetch(t, ctx, d, spec.ID, "source", map[string]string{fakeinternet.WebA: fakeinternet.WebA})
}

// testNetworkPool checks a sandbox claimed from a pool of networked spares
// gets the network its spec asks for.
func (s *suite) testNetworkPool(t *testing.T) {
	d, spec, _, _ := s.networked(t)
	p := pooler(t, d)
	ctx := testCtx(t)
	p.SetPools([]driver.Pool{{Key: "net", Spec: spec, Size: 1}})
	t.Cleanup(func() { p.SetPools(nil) })
	eventually(t, ctx, "the pool fills", func() bool { return poolReady(p, "net") == 1 })
	claimed := spec
	claimed.ID = newID(t)
	allow := sandboxnet.Policy{Internet: false, Allow: []string{"example.test"}}
	claimed.Network = &allow
	s.create(t, ctx, d, claimed)
	expectFetch(t, ctx, d, claimed.ID, "claimed", map[string]string{
		"example.test": fakeinternet.WebA, fakeinternet.WebB: "",
	})
}
