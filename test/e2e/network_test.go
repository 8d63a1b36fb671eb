package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/sandboxnet/fakeinternet"
)

// fetch asks host (an address, or a name den's resolver resolves) for
// http://host[:port]/ from inside sandbox id: the body, or "" when that
// failed. busybox nslookup and nc: Debian's static busybox wget crashes in
// its libc's name lookup.
func (in *instance) fetch(id, host string, port int) string {
	in.t.Helper()
	script := fmt.Sprintf(`n=%s h=%s
case "$h" in *[a-z]*) h=$(nslookup "$h" 2>/dev/null | awk '/^Address/ {a=$NF} END {print a}') ;; esac
[ -n "$h" ] || exit 2
printf 'GET / HTTP/1.0\r\nHost: %%s\r\n\r\n' "$n" | nc -w 3 "$h" %d | sed '1,/^\r*$/d'`, host, host, port)
	res := in.den(nil, "exec", id, "--", "sh", "-c", script)
	if res.code != 0 {
		return ""
	}
	return strings.TrimSpace(res.stdout)
}

// expectFetch checks what sandbox id reaches: host → body, "" for none.
func (in *instance) expectFetch(id, what string, want map[string]string) {
	in.t.Helper()
	for host, body := range want {
		if got := in.fetch(id, host, 80); got != body {
			in.t.Errorf("%s: GET http://%s/ from %s = %q, want %q", what, host, id, got, body)
		}
	}
}

// TestNetwork is the access issue's egress item through den up: a
// sandbox reaches a fake internet by address and by name through den's
// resolver; `den net set --allow example.test` leaves only that name
// (an address looked up elsewhere stays shut, other names do not
// resolve, another name asked of its address is refused); --internet=false shuts everything; `den create --no-internet`
// starts shut; nothing reaches den's API on the host or the metadata
// address; `den rm` removes the network.
func TestNetwork(t *testing.T) {
	inet := fakeinternet.New(t)
	inet.ServeDNS(t, map[string]string{"example.test": fakeinternet.WebA, "other.test": fakeinternet.WebB})
	in := &instance{t: t, bin: denBin(t), dataDir: t.TempDir(), log: &bytes.Buffer{}, upWait: time.Minute,
		upArgs: []string{"--no-base", "--sandbox-dns", fakeinternet.DNS + ":53"}}
	in.start()
	t.Cleanup(func() { in.removeAll(); in.stop() })

	id := in.create()
	a, b := fakeinternet.WebA, fakeinternet.WebB
	in.expectFetch(id, "default policy", map[string]string{
		a: a, "example.test": a, "other.test": b, fakeinternet.Metadata: "",
	})
	// den's API, on the host, by the sandbox's gateway.
	route := in.mustDen("exec", id, "--", "ip", "route")
	gw := ""
	if f := strings.Fields(route[strings.Index(route, "default via ")+len("default via "):]); len(f) > 0 {
		gw = f[0]
	}
	port := in.url[strings.LastIndex(in.url, ":")+1:]
	var apiPort int
	fmt.Sscan(port, &apiPort)
	if gw == "" || apiPort == 0 {
		t.Fatalf("gateway %q, API port %q from %q and %s", gw, port, route, in.url)
	}
	if got := in.fetch(id, gw, apiPort); got != "" {
		t.Errorf("the sandbox reached den's API on the host at %s:%d: %q", gw, apiPort, got)
	}

	begin := time.Now()
	in.mustDen("net", "set", id, "--allow", "example.test")
	t.Logf("den net set took %v (the rules are in place when it returns)", time.Since(begin))
	in.expectFetch(id, "--allow example.test", map[string]string{"example.test": a, "other.test": "", b: ""})
	// example.test's address, asked for another name (a virtual host
	// there), is refused by den's name check with a 403 that says why.
	res := in.den(nil, "exec", id, "--", "sh", "-c", fmt.Sprintf(`printf 'GET / HTTP/1.0\r\nHost: other.test\r\n\r\n' | nc -w 3 %s 80`, a))
	if !strings.Contains(res.stdout, "403 Forbidden") || !strings.Contains(res.stdout, "does not allow other.test") {
		t.Errorf("GET with Host other.test at example.test's address %s: %q %q", a, res.stdout, res.stderr)
	}
	var pol rest.NetworkPolicy
	if err := json.Unmarshal([]byte(in.mustDen("net", "get", id, "--json")), &pol); err != nil {
		t.Fatal(err)
	}
	if pol.InternetOn() || strings.Join(pol.Allow, ",") != "example.test" {
		t.Errorf("den net get: %+v", pol)
	}
	in.mustDen("net", "set", id, "--internet=false", "--allow", "")
	in.expectFetch(id, "--internet=false", map[string]string{a: "", "example.test": ""})
	in.mustDen("net", "set", id, "--internet=true")
	in.expectFetch(id, "internet back on", map[string]string{a: a})

	shut := in.create("--no-internet")
	in.expectFetch(shut, "create --no-internet", map[string]string{a: "", "example.test": ""})
	if res := in.den(nil, "net", "set", shut, "--allow", "not a rule"); res.code == 0 || !strings.Contains(res.stderr, `rule "not a rule"`) {
		t.Errorf("den net set with a bad rule: code %d, stderr %q", res.code, res.stderr)
	}

	nsDir := filepath.Join(in.dataDir, "net", "ns")
	before, _ := os.ReadDir(nsDir)
	in.mustDen("rm", shut)
	after, _ := os.ReadDir(nsDir)
	if len(after) != len(before)-1 {
		t.Errorf("network namespaces: %d before den rm, %d after; want one fewer", len(before), len(after))
	}
}
