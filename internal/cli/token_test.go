package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/api/rest"
)

// clusterAPI is a fake den server of the token and node routes that
// records what the CLI sent.
type clusterAPI struct {
	mu   sync.Mutex
	reqs []string // "METHOD /path body"
}

func (f *clusterAPI) serve(t *testing.T) string {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	node := rest.Node{ID: "n-1", State: rest.NodeDraining, CPUs: 16, MemoryMB: 65536, Sandboxes: 2, Version: "v1",
		Cluster: &rest.NodeDetail{Name: "box", Pool: "gpu", CPUs: 16, Server: "s1", Labels: map[string]string{"zone": "a", "disk": "ssd"}}}
	answers := map[string]any{
		"POST /v1/tokens":          rest.JoinToken{ID: "abc123", Uses: 3, Token: "den1.x.abc123.secret"},
		"GET /v1/tokens":           rest.JoinTokenList{Tokens: []rest.JoinToken{{ID: "abc123", Uses: 3, Used: 1, Pool: "gpu", ExpiresAt: &exp}, {ID: "def456", Uses: 1, Role: rest.TokenRoleServer}}},
		"POST /v1/nodes/n-1/drain": node,
		"GET /v1/nodes":            rest.NodeList{Nodes: []rest.Node{node}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		key := r.Method + " " + r.URL.Path
		f.mu.Lock()
		f.reqs = append(f.reqs, strings.TrimSpace(key+" "+string(bytes.TrimSpace(body))))
		f.mu.Unlock()
		if r.Method == http.MethodDelete {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		a, ok := answers[key]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(rest.Error{Code: "not_found", Message: "no route"})
			return
		}
		json.NewEncoder(w).Encode(a)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestTokenCommands(t *testing.T) {
	isolate(t)
	f := &clusterAPI{}
	url := f.serve(t)
	if got := ok(t, url, "", "token", "create", "--ttl", "2h", "--uses", "3", "--pool", "gpu", "--labels", "zone=a"); got != "den1.x.abc123.secret\n" {
		t.Errorf("token create printed %q", got)
	}
	ok(t, url, "", "token", "create", "--ttl", "0")
	ok(t, url, "", "token", "create", "--server")
	want := "ID      ADMITS   USED  POOL  LABELS  EXPIRES\n" +
		"abc123  agents   1/3   gpu   -       2030-01-02T03:04:05Z\n" +
		"def456  servers  0/1   -     -       never\n"
	if got := ok(t, url, "", "token", "ls"); got != want {
		t.Errorf("token ls:\n%s\nwant:\n%s", got, want)
	}
	ok(t, url, "", "token", "rm", "abc123")
	if got := ok(t, url, "", "node", "drain", "n-1"); got != "n-1 draining\n" {
		t.Errorf("node drain printed %q", got)
	}
	wantNodes := "ID   NAME  STATE     POOL  CPUS  MEMORY   SANDBOXES  SERVER  LABELS           VERSION\n" +
		"n-1  box   draining  gpu   16    65536MB  2          s1      disk=ssd,zone=a  v1\n"
	if got := ok(t, url, "", "node", "ls"); got != wantNodes {
		t.Errorf("node ls:\n%s\nwant:\n%s", got, wantNodes)
	}
	wantReqs := []string{
		`POST /v1/tokens {"ttl_sec":7200,"uses":3,"pool":"gpu","labels":{"zone":"a"}}`,
		`POST /v1/tokens {"ttl_sec":0,"uses":1}`,
		`POST /v1/tokens {"ttl_sec":3600,"uses":1,"role":"server"}`,
		"GET /v1/tokens",
		"DELETE /v1/tokens/abc123",
		"POST /v1/nodes/n-1/drain",
		"GET /v1/nodes",
	}
	if d := cmp.Diff(wantReqs, f.reqs); d != "" {
		t.Errorf("requests (-want +got):\n%s", d)
	}
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{[]string{"token", "create", "--labels", "zone"}, `--labels: label "zone": want key=value`},
		{[]string{"token", "create", "--ttl", "-1h"}, "--ttl -1h0m0s: give whole seconds"},
		{[]string{"token", "create", "--server", "--pool", "gpu"}, "--server: a server token takes no --pool or --labels"},
		{[]string{"node", "drain"}, "the node's ID"},
	} {
		r := cli(t, url, "", tt.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tt.msg) {
			t.Errorf("den %v: exit %d, stderr %q; want 2 and %q", tt.args, r.code, r.stderr, tt.msg)
		}
	}
}
