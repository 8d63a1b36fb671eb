package e2b

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/api/rest"
)

func TestCreateAndGet(t *testing.T) {
	e := newTestEnv(t)
	for _, path := range []string{"/sandboxes", "/v2/sandboxes"} {
		t.Run(path, func(t *testing.T) {
			r := e.call("POST", path, e.keyA, `{"templateID":"busybox","timeout":60,"metadata":{"k":"v"},"envVars":{"A":"1"},"secure":true,"allow_internet_access":true,"mcp":null}`)
			if r.status != http.StatusCreated {
				t.Fatalf("create: HTTP %d: %s", r.status, r.body)
			}
			var sb sandbox
			decode(t, r.body, &sb)
			if sb.TemplateID != "busybox" || sb.EnvdVersion != EnvdVersion || sb.ClientID == "" || *sb.Domain != "den.test" {
				t.Errorf("create answer: %+v", sb)
			}
			if !regexp.MustCompile(`^[0-9a-f]{48}$`).MatchString(sb.EnvdAccessToken) {
				t.Errorf("envdAccessToken = %q, want 48 hex digits", sb.EnvdAccessToken)
			}
			g := e.call("GET", "/sandboxes/"+sb.SandboxID, e.keyA, "")
			var d sandboxDetail
			decode(t, g.body, &d)
			if g.status != http.StatusOK || d.State != "running" || d.CPUCount != 1 || d.MemoryMB != 512 || d.DiskSizeMB != 2048 ||
				d.EnvdAccessToken != sb.EnvdAccessToken || d.Metadata["k"] != "v" || d.EndAt.Sub(d.StartedAt).Seconds() != 60 {
				t.Errorf("GET: HTTP %d %+v", g.status, d)
			}
		})
	}
}

// TestWrongInput checks every route's answer to bad input: status and
// E2B's {code, message}.
func TestWrongInput(t *testing.T) {
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"templateID":"busybox"}`)
	id := sb.SandboxID
	tests := []struct {
		name, method, path, key, body string
		status                        int
		msg                           string
	}{
		{"no key", "POST", "/v2/sandboxes", "", `{"templateID":"busybox"}`, 401, "missing API key"},
		{"bad key", "GET", "/v2/sandboxes", "e2b_0000000000000000000000000000000000000000", "", 401, "invalid API key"},
		{"empty body", "POST", "/sandboxes", "A", "", 400, "request body is empty"},
		{"bad JSON", "POST", "/v2/sandboxes", "A", `{"templateID":`, 400, "invalid JSON body"},
		{"no template", "POST", "/v2/sandboxes", "A", `{}`, 400, "templateID is required"},
		{"unknown template", "POST", "/v2/sandboxes", "A", `{"templateID":"nope"}`, 404, "template 'nope' not found"},
		{"negative timeout", "POST", "/v2/sandboxes", "A", `{"templateID":"busybox","timeout":-1}`, 400, "timeout must be at least 0"},
		{"bad env name", "POST", "/v2/sandboxes", "A", `{"templateID":"busybox","envVars":{"1A":"x"}}`, 400, `env name "1A" is invalid`},
		{"get unknown", "GET", "/sandboxes/nope", "A", "", 404, `sandbox "nope" doesn't exist`},
		{"kill unknown", "DELETE", "/sandboxes/nope", "A", "", 404, `sandbox "nope" doesn't exist`},
		{"connect unknown", "POST", "/sandboxes/nope/connect", "A", `{"timeout":10}`, 404, `sandbox "nope" doesn't exist`},
		{"connect v2 unknown", "POST", "/v2/sandboxes/nope/connect", "A", `{}`, 404, `sandbox "nope" doesn't exist`},
		{"connect bad timeout", "POST", "/sandboxes/" + id + "/connect", "A", `{"timeout":-5}`, 400, "timeout must be at least 0"},
		{"timeout no body", "POST", "/sandboxes/" + id + "/timeout", "A", "", 400, "request body is empty"},
		{"timeout missing", "POST", "/sandboxes/" + id + "/timeout", "A", `{}`, 400, "timeout is required"},
		{"timeout unknown", "POST", "/sandboxes/nope/timeout", "A", `{"timeout":10}`, 404, `sandbox "nope" doesn't exist`},
		{"refresh too long", "POST", "/sandboxes/" + id + "/refreshes", "A", `{"duration":3601}`, 400, "duration must be between 0 and 3600"},
		{"refresh unknown", "POST", "/sandboxes/nope/refreshes", "A", `{}`, 404, `sandbox "nope" doesn't exist`},
		{"resume running", "POST", "/sandboxes/" + id + "/resume", "A", `{}`, 409, `sandbox "` + id + `" is already running`},
		{"resume bad timeout", "POST", "/sandboxes/" + id + "/resume", "A", `{"timeout":-1}`, 400, "timeout must be at least 0"},
		{"pause unknown", "POST", "/sandboxes/nope/pause", "A", "", 404, `sandbox "nope" doesn't exist`},
		{"resume unknown", "POST", "/sandboxes/nope/resume", "A", "", 404, `sandbox "nope" doesn't exist`},
		{"metrics unknown", "GET", "/sandboxes/nope/metrics", "A", "", 404, `sandbox "nope" doesn't exist`},
		{"metrics no ids", "GET", "/sandboxes/metrics", "A", "", 400, "sandbox_ids must list 1 to 100"},
		{"list bad limit", "GET", "/v2/sandboxes?limit=0", "A", "", 400, "limit must be between 1 and 100"},
		{"list big limit", "GET", "/v2/sandboxes?limit=101", "A", "", 400, "limit must be between 1 and 100"},
		{"list bad state", "GET", "/v2/sandboxes?state=dead", "A", "", 400, `invalid state "dead"`},
		{"list bad metadata", "GET", "/v2/sandboxes?metadata=" + url.QueryEscape("a=%zz"), "A", "", 400, "invalid metadata filter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := tt.key
			if key == "A" {
				key = e.keyA
			}
			checkError(t, e.call(tt.method, tt.path, key, tt.body), tt.status, tt.msg)
		})
	}
}

// TestTenantIsolation checks that tenant B's key gets 404 for tenant A's
// sandbox on every route, and does not list it.
func TestTenantIsolation(t *testing.T) {
	e := newTestEnv(t)
	id := e.create(e.keyA, `{"templateID":"busybox"}`).SandboxID
	routes := []struct{ method, path, body string }{
		{"GET", "/sandboxes/" + id, ""},
		{"DELETE", "/sandboxes/" + id, ""},
		{"POST", "/sandboxes/" + id + "/connect", `{"timeout":10}`},
		{"POST", "/v2/sandboxes/" + id + "/connect", `{}`},
		{"POST", "/sandboxes/" + id + "/timeout", `{"timeout":10}`},
		{"POST", "/sandboxes/" + id + "/refreshes", `{}`},
		{"POST", "/sandboxes/" + id + "/pause", ""},
		{"POST", "/sandboxes/" + id + "/resume", ""},
		{"GET", "/sandboxes/" + id + "/metrics", ""},
	}
	for _, rt := range routes {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			checkError(t, e.call(rt.method, rt.path, e.keyB, rt.body), 404, "doesn't exist")
		})
	}
	for _, path := range []string{"/sandboxes", "/v2/sandboxes"} {
		var got []sandboxDetail
		decode(t, e.call("GET", path, e.keyB, "").body, &got)
		if len(got) != 0 {
			t.Errorf("GET %s with tenant B's key lists %d sandboxes", path, len(got))
		}
	}
	var m sandboxesWithMetrics
	decode(t, e.call("GET", "/sandboxes/metrics?sandbox_ids="+id, e.keyB, "").body, &m)
	if len(m.Sandboxes) != 0 {
		t.Errorf("metrics of tenant A's sandbox with tenant B's key: %v", m)
	}
	if r := e.call("GET", "/sandboxes/"+id, e.keyA, ""); r.status != 200 {
		t.Errorf("tenant A's sandbox after tenant B's attempts: HTTP %d", r.status)
	}
}

// TestListPaginationAndMetadata pages through v2 with limit, nextToken and
// x-next-token, filtering by metadata as the SDKs encode it.
func TestListPaginationAndMetadata(t *testing.T) {
	e := newTestEnv(t)
	var want []string
	for i := range 5 {
		sb := e.create(e.keyA, fmt.Sprintf(`{"templateID":"busybox","metadata":{"group":"g","n":"%d"}}`, i))
		want = append(want, sb.SandboxID)
	}
	e.create(e.keyA, `{"templateID":"busybox","metadata":{"group":"other"}}`)
	filter := url.QueryEscape("group=g")
	var got []string
	token, pages := "", 0
	for {
		r := e.call("GET", "/v2/sandboxes?limit=2&state=running&metadata="+filter+"&nextToken="+url.QueryEscape(token), e.keyA, "")
		var page []sandboxDetail
		decode(t, r.body, &page)
		if r.status != 200 || len(page) > 2 {
			t.Fatalf("page %d: HTTP %d, %d items", pages, r.status, len(page))
		}
		for _, sb := range page {
			got = append(got, sb.SandboxID)
		}
		pages++
		if token = r.header.Get("X-Next-Token"); token == "" {
			break
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" || pages != 3 {
		t.Errorf("listed (-want +got), %d pages:\n%s", pages, diff)
	}
	var one []sandboxDetail
	decode(t, e.call("GET", "/sandboxes?metadata="+url.QueryEscape("group=g&n=3"), e.keyA, "").body, &one)
	if len(one) != 1 || one[0].Metadata["n"] != "3" {
		t.Errorf("v1 list with two metadata pairs: %+v", one)
	}
	var paused []sandboxDetail
	decode(t, e.call("GET", "/v2/sandboxes?state=paused", e.keyA, "").body, &paused)
	if len(paused) != 0 {
		t.Errorf("state=paused lists %d sandboxes", len(paused))
	}
}

func TestTimeoutConnectKill(t *testing.T) {
	e := newTestEnv(t)
	id := e.create(e.keyA, `{"templateID":"busybox","timeout":30}`).SandboxID
	if r := e.call("POST", "/sandboxes/"+id+"/timeout", e.keyA, `{"timeout":600}`); r.status != 204 {
		t.Fatalf("timeout: HTTP %d %s", r.status, r.body)
	}
	var d sandboxDetail
	decode(t, e.call("GET", "/sandboxes/"+id, e.keyA, "").body, &d)
	if left := d.EndAt.Sub(d.StartedAt).Seconds(); left < 590 {
		t.Errorf("endAt - startedAt after a 600 s timeout = %v s", left)
	}
	for _, path := range []string{"/sandboxes/" + id + "/connect", "/v2/sandboxes/" + id + "/connect"} {
		r := e.call("POST", path, e.keyA, `{"timeout":10}`)
		var sb sandbox
		decode(t, r.body, &sb)
		if r.status != 200 || sb.SandboxID != id || sb.EnvdAccessToken == "" {
			t.Errorf("%s: HTTP %d %s", path, r.status, r.body)
		}
	}
	if r := e.call("POST", "/sandboxes/"+id+"/refreshes", e.keyA, `{"duration":60}`); r.status != 204 {
		t.Errorf("refreshes: HTTP %d %s", r.status, r.body)
	}
	if r := e.call("DELETE", "/sandboxes/"+id, e.keyA, ""); r.status != 204 {
		t.Fatalf("kill: HTTP %d %s", r.status, r.body)
	}
	checkError(t, e.call("DELETE", "/sandboxes/"+id, e.keyA, ""), 404, "doesn't exist")
}

func TestMetrics(t *testing.T) {
	e := newTestEnv(t)
	id := e.create(e.keyA, `{"templateID":"busybox"}`).SandboxID
	var ms []sandboxMetric
	r := e.call("GET", "/sandboxes/"+id+"/metrics", e.keyA, "")
	decode(t, r.body, &ms)
	if r.status != 200 || len(ms) != 1 {
		t.Fatalf("metrics: HTTP %d %s", r.status, r.body)
	}
	m := ms[0]
	if m.CPUCount != 1 || m.CPUUsedPct <= 0 || m.MemUsed == 0 || m.MemTotal != 512<<20 || m.DiskTotal != 2048<<20 || m.TimestampUnix == 0 {
		t.Errorf("metric has zeros: %+v", m)
	}
	var many sandboxesWithMetrics
	decode(t, e.call("GET", "/sandboxes/metrics?sandbox_ids="+id+",nope", e.keyA, "").body, &many)
	if len(many.Sandboxes) != 1 || many.Sandboxes[id].MemUsed == 0 {
		t.Errorf("GET /sandboxes/metrics: %+v", many)
	}
}

// TestKillWhileStopping: a sandbox its timer (or another kill) is
// removing is already gone for E2B: kill answers 404, as connect and
// getInfo do, and the SDK's kill reports false.
func TestKillWhileStopping(t *testing.T) {
	e := newTestEnv(t)
	id := e.create(e.keyA, `{"templateID":"busybox"}`).SandboxID
	setState := func(state string) {
		t.Helper()
		sb, err := e.st.Snapshot().Sandbox(id)
		if err != nil {
			t.Fatal(err)
		}
		sb.State = state
		if err := e.st.UpdateSandbox(context.Background(), sb); err != nil {
			t.Fatalf("set state %s: %v", state, err)
		}
	}
	setState(rest.StateStopping)
	checkError(t, e.call("DELETE", "/sandboxes/"+id, e.keyA, ""), 404, `sandbox "`+id+`" is stopping`)
	checkError(t, e.call("GET", "/sandboxes/"+id, e.keyA, ""), 404, `is stopping`)
	setState(rest.StateRunning)
	if r := e.call("DELETE", "/sandboxes/"+id, e.keyA, ""); r.status != 204 {
		t.Fatalf("kill: HTTP %d %s", r.status, r.body)
	}
}
