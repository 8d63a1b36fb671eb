package server

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/nodeproto"
	"github.com/denhq/den/internal/store"
)

// fakeCluster is a node gateway with a fixed CA hash.
type fakeCluster struct{}

func (fakeCluster) CAHash() string { return "sha256:" + strings.Repeat("ab", 32) }

func (fakeCluster) CAs(string) (string, string, bool) { return "", "", false }

func withCluster(c *Config) { c.Cluster = fakeCluster{} }

func TestJoinTokens(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withCluster)
	admin := e.addAdminKey()
	var tok rest.JoinToken
	e.doJSON("POST", "/v1/tokens", admin, `{"uses":3,"pool":"gpu","labels":{"zone":"a"}}`, http.StatusCreated, &tok)
	parsed, err := nodeproto.ParseToken(tok.Token)
	if err != nil || parsed.CAHash != (fakeCluster{}).CAHash() || parsed.ID != tok.ID {
		t.Fatalf("created token %+v: parsed %+v, %v", tok, parsed, err)
	}
	if tok.Uses != 3 || tok.Used != 0 || tok.Pool != "gpu" || tok.ExpiresAt == nil || !tok.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("created token: %+v", tok)
	}
	rec, err := e.store.Snapshot().JoinToken(tok.ID)
	if err != nil || rec.Hash != parsed.SecretHash() || strings.Contains(rec.Hash, parsed.Secret) {
		t.Fatalf("stored token: %+v, %v", rec, err)
	}
	var never rest.JoinToken
	e.doJSON("POST", "/v1/tokens", admin, `{"ttl_sec":0}`, http.StatusCreated, &never)
	if never.ExpiresAt != nil || never.Uses != 1 {
		t.Fatalf("token without expiry: %+v", never)
	}
	var srvTok rest.JoinToken
	e.doJSON("POST", "/v1/tokens", admin, `{"role":"server"}`, http.StatusCreated, &srvTok)
	if rec, err := e.store.Snapshot().JoinToken(srvTok.ID); err != nil || rec.Role != store.RoleServer || srvTok.Role != rest.TokenRoleServer {
		t.Fatalf("server token: %+v, stored %+v, %v", srvTok, rec, err)
	}
	var list rest.JoinTokenList
	e.doJSON("GET", "/v1/tokens", admin, "", http.StatusOK, &list)
	if len(list.Tokens) != 3 || list.Tokens[0].Token != "" || list.Tokens[1].Token != "" {
		t.Fatalf("listed tokens (secrets must not show): %+v", list)
	}
	e.doJSON("DELETE", "/v1/tokens/"+tok.ID, admin, "", http.StatusNoContent, nil)
	var apiErr rest.Error
	e.doJSON("DELETE", "/v1/tokens/"+tok.ID, admin, "", http.StatusNotFound, &apiErr)
	for _, tt := range []struct {
		key, body string
		status    int
		msg       string
	}{
		{e.keyA, `{}`, http.StatusForbidden, "only an admin API key may create join tokens"},
		{admin, `{"uses":-1}`, http.StatusBadRequest, "uses -1: give 1 to 100000"},
		{admin, `{"ttl_sec":-5}`, http.StatusBadRequest, "ttl_sec -5"},
		{admin, `{"labels":{"Bad":"x"}}`, http.StatusBadRequest, `label key "Bad" must be`},
		{admin, `{"pool":"No Pool"}`, http.StatusBadRequest, "pool name"},
		{admin, `{"role":"root"}`, http.StatusBadRequest, `role "root": give "" (agents) or "server"`},
		{admin, `{"role":"server","pool":"gpu"}`, http.StatusBadRequest, "a server token takes no pool or labels"},
	} {
		var apiErr rest.Error
		e.doJSON("POST", "/v1/tokens", tt.key, tt.body, tt.status, &apiErr)
		if !strings.Contains(apiErr.Message, tt.msg) {
			t.Errorf("POST /v1/tokens %s: %q, want %q", tt.body, apiErr.Message, tt.msg)
		}
	}
	e.doJSON("GET", "/v1/tokens", e.keyA, "", http.StatusForbidden, nil)
}

func TestJoinTokensNeedACluster(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	var apiErr rest.Error
	e.doJSON("POST", "/v1/tokens", e.addAdminKey(), `{}`, http.StatusConflict, &apiErr)
	if !strings.Contains(apiErr.Message, "this server has no node gateway") {
		t.Fatalf("token on den up: %+v", apiErr)
	}
	e.doJSON("POST", "/v1/nodes/"+nodeID+"/drain", e.addAdminKeyOf(tenantB), "", http.StatusConflict, &apiErr)
	if apiErr.Message != "drain node "+nodeID+": draining is for the nodes of a cluster (den server); den up runs only its local node" {
		t.Fatalf("drain on den up: %+v", apiErr)
	}
	e.doJSON("POST", "/v1/nodes/"+nodeID+"/undrain", e.addAdminKeyOf(tenantB), "", http.StatusConflict, &apiErr)
	if apiErr.Message != "undrain node "+nodeID+": draining is for the nodes of a cluster (den server); den up runs only its local node" {
		t.Fatalf("undrain on den up: %+v", apiErr)
	}
}

func TestClusterNodes(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withCluster)
	admin := e.addAdminKey()
	ctx := context.Background()
	if err := e.store.PutJoinToken(ctx, &store.JoinToken{ID: "t", Hash: "h", Uses: 2, Labels: map[string]string{"zone": "a"}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"n-1", "n-2"} {
		if err := e.store.JoinNode(ctx, "t", "h", t0, &store.Node{ID: id, Name: "box-" + id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.store.NodeUp(ctx, "n-1", "s1", t0, store.NodeHello{Capacity: store.NodeCapacity{CPUs: 16.5, MemoryMB: 65536, DiskMB: 100}, Runtimes: []string{"gvisor", "qemu"}, Version: "v9"}); err != nil {
		t.Fatal(err)
	}
	for _, sb := range []*store.Sandbox{{ID: "a", Tenant: tenantA, Node: "n-1", State: store.StateRunning}, {ID: "b", Tenant: tenantA, Node: "n-1", State: store.StateFailed}} {
		if err := e.store.CreateSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
	}
	var list rest.NodeList
	e.doJSON("GET", "/v1/nodes", e.keyA, "", http.StatusOK, &list)
	if len(list.Nodes) != 2 {
		t.Fatalf("nodes: %+v", list)
	}
	n1, n2 := list.Nodes[0], list.Nodes[1]
	if n1.ID != "n-1" || n1.State != rest.NodeReady || n1.CPUs != 16 || n1.Sandboxes != 1 || n1.Version != "v9" ||
		len(n1.Runtimes) != 2 || !n1.Runtimes[0].Default || n1.Cluster == nil || n1.Cluster.CPUs != 16.5 ||
		n1.Cluster.Server != "s1" || n1.Cluster.Labels["zone"] != "a" || n1.Cluster.Name != "box-n-1" {
		t.Fatalf("node n-1: %+v %+v", n1, n1.Cluster)
	}
	if n2.State != rest.NodeDown {
		t.Fatalf("node n-2 before its hello: %+v", n2)
	}
	var got rest.Node
	e.doJSON("POST", "/v1/nodes/n-1/drain", admin, "", http.StatusOK, &got)
	if got.State != rest.NodeDraining || !got.Cluster.Draining {
		t.Fatalf("after drain: %+v %+v", got, got.Cluster)
	}
	if n, _ := e.store.Snapshot().Node("n-1"); n.Schedulable() {
		t.Fatalf("a draining node is schedulable: %+v", n)
	}
	e.doJSON("GET", "/v1/nodes/n-1", e.keyA, "", http.StatusOK, &got)
	if got.State != rest.NodeDraining {
		t.Fatalf("GET after drain: %+v", got)
	}
	got = rest.Node{}
	e.doJSON("POST", "/v1/nodes/n-1/undrain", admin, "", http.StatusOK, &got)
	if got.State != rest.NodeReady || got.Cluster.Draining {
		t.Fatalf("after undrain: %+v", got)
	}
	var apiErr rest.Error
	e.doJSON("POST", "/v1/nodes/n-1/drain", e.keyA, "", http.StatusForbidden, &apiErr)
	e.doJSON("POST", "/v1/nodes/nope/drain", admin, "", http.StatusNotFound, &apiErr)
	if apiErr.Message != "node nope not found" {
		t.Errorf("drain an unknown node: %+v", apiErr)
	}
}
