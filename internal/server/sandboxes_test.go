package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
)

func timePtr(t time.Time) *time.Time { return &t }

var idRE = regexp.MustCompile(`^[a-z][a-z0-9]{19}$`)

// netPolicy is a network policy as the API shows it: internet on or off,
// the allow rules given, and "*.evil.org" denied when internet is off
// (TestCreate's "every field").
func netPolicy(internet bool, allow ...string) *rest.NetworkPolicy {
	p := &rest.NetworkPolicy{Internet: &internet, Allow: allow}
	if !internet {
		p.Deny = []string{"*.evil.org"}
	}
	return p
}

func TestCreate(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	tests := []struct {
		name string
		body string
		want rest.Sandbox
	}{
		{
			name: "defaults",
			body: `{"image":"busybox"}`,
			want: rest.Sandbox{
				Image: "busybox", State: "running", Runtime: "stub", Node: nodeID, Network: netPolicy(true),
				CPUs: 1, MemoryMB: 512, DiskMB: 2048, Timeout: 300, TimeoutAction: "kill",
				CreatedAt: t0, StartedAt: timePtr(t0), ExpiresAt: timePtr(t0.Add(300 * time.Second)),
			},
		},
		{
			name: "every field",
			body: `{"image":"busybox","name":"web-1","cpus":2.5,"memory_mb":1024,"disk_mb":4096,
				"env":{"FOO":"bar"},"metadata":{"team":"infra"},"timeout":60,
				"timeout_action":"suspend","idle_timeout":10,"idle_action":"suspend",
				"network":{"internet":false,"allow":["Example.test.","10.1.2.3"],"deny":["*.evil.org"]}}`,
			want: rest.Sandbox{
				Name: "web-1", Image: "busybox", State: "running", Runtime: "stub", Node: nodeID,
				Network: netPolicy(false, "example.test", "10.1.2.3/32"),
				CPUs:    2.5, MemoryMB: 1024, DiskMB: 4096, Metadata: map[string]string{"team": "infra"}, Timeout: 60,
				TimeoutAction: "suspend", IdleTimeout: 10, IdleAction: "suspend",
				CreatedAt: t0, StartedAt: timePtr(t0), ExpiresAt: timePtr(t0.Add(60 * time.Second)),
				LastActiveAt: timePtr(t0), IdleExpiresAt: timePtr(t0.Add(10 * time.Second)),
			},
		},
		{
			name: "idle timeout with the default action",
			body: `{"image":"busybox","timeout":0,"idle_timeout":600}`,
			want: rest.Sandbox{
				Image: "busybox", State: "running", Runtime: "stub", Node: nodeID, Network: netPolicy(true),
				CPUs: 1, MemoryMB: 512, DiskMB: 2048, IdleTimeout: 600, IdleAction: "kill",
				CreatedAt: t0, StartedAt: timePtr(t0), LastActiveAt: timePtr(t0), IdleExpiresAt: timePtr(t0.Add(600 * time.Second)),
			},
		},
		{
			name: "timeout 0 never expires",
			body: `{"image":"busybox","timeout":0}`,
			want: rest.Sandbox{
				Image: "busybox", State: "running", Runtime: "stub", Node: nodeID, Network: netPolicy(true),
				CPUs: 1, MemoryMB: 512, DiskMB: 2048, CreatedAt: t0, StartedAt: timePtr(t0),
			},
		},
		{
			name: "name of a failed sandbox is free",
			body: `{"image":"busybox","name":"broken"}`,
			want: rest.Sandbox{
				Name: "broken", Image: "busybox", State: "running", Runtime: "stub", Node: nodeID, Network: netPolicy(true),
				CPUs: 1, MemoryMB: 512, DiskMB: 2048, Timeout: 300, TimeoutAction: "kill",
				CreatedAt: t0, StartedAt: timePtr(t0), ExpiresAt: timePtr(t0.Add(300 * time.Second)),
			},
		},
	}
	e.createFailed(e.keyA, "broken")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.create(e.keyA, tt.body)
			if !idRE.MatchString(got.ID) {
				t.Errorf("id %q is not 20 lowercase letters and digits starting with a letter", got.ID)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(rest.Sandbox{}, "ID")); diff != "" {
				t.Errorf("created sandbox (-want +got):\n%s", diff)
			}
			var stored rest.Sandbox
			e.doJSON("GET", "/v1/sandboxes/"+got.ID, e.keyA, "", http.StatusOK, &stored)
			if diff := cmp.Diff(got, stored); diff != "" {
				t.Errorf("GET after create (-create +get):\n%s", diff)
			}
		})
	}
}

func TestCreateStartFailure(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	status, body := e.do("POST", "/v1/sandboxes", e.keyA, fmt.Sprintf(`{"image":"busybox","name":"boom","metadata":{%q:"no capacity"}}`, failKey))
	sb, err := e.store.Snapshot().SandboxByName(tenantA, "boom")
	if err != nil {
		t.Fatalf("record of failed sandbox: %v", err)
	}
	checkAPIError(t, status, body, http.StatusInternalServerError,
		rest.Error{Code: "internal", Message: fmt.Sprintf("create sandbox %s: no capacity", sb.ID)})
	var got rest.Sandbox
	e.doJSON("GET", "/v1/sandboxes/boom", e.keyA, "", http.StatusOK, &got)
	if got.State != "failed" || got.Reason != "no capacity" {
		t.Errorf("state, reason = %q, %q; want failed, no capacity", got.State, got.Reason)
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	want := e.create(e.keyA, `{"image":"busybox","name":"db"}`)
	for _, ref := range []string{want.ID, "db"} {
		t.Run(ref, func(t *testing.T) {
			var got rest.Sandbox
			e.doJSON("GET", "/v1/sandboxes/"+ref, e.keyA, "", http.StatusOK, &got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("GET %s (-want +got):\n%s", ref, diff)
			}
		})
	}
}

// listAll pages through GET /v1/sandboxes?query with limit and returns
// the IDs in order and the number of pages.
func (e *testEnv) listAll(key, query string, limit int) (ids []string, pages int) {
	e.t.Helper()
	token := ""
	for {
		q, err := url.ParseQuery(query)
		if err != nil {
			e.t.Fatal(err)
		}
		if limit > 0 {
			q.Set("limit", fmt.Sprint(limit))
		}
		if token != "" {
			q.Set("page_token", token)
		}
		var page rest.SandboxList
		e.doJSON("GET", "/v1/sandboxes?"+q.Encode(), key, "", http.StatusOK, &page)
		pages++
		if limit > 0 && len(page.Sandboxes) > limit {
			e.t.Fatalf("page %d has %d sandboxes, limit %d", pages, len(page.Sandboxes), limit)
		}
		for _, sb := range page.Sandboxes {
			ids = append(ids, sb.ID)
		}
		if page.NextPageToken == "" {
			return ids, pages
		}
		if pages > 100 {
			e.t.Fatal("listing does not end")
		}
		token = page.NextPageToken
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	var all, teamA []string
	for i := range 5 {
		team := []string{"a", "b"}[i%2]
		sb := e.create(e.keyA, fmt.Sprintf(`{"image":"busybox","metadata":{"team":%q,"n":"%d"}}`, team, i))
		all = append(all, sb.ID)
		if team == "a" {
			teamA = append(teamA, sb.ID)
		}
		e.clock.Advance(time.Second)
	}
	failed := e.createFailed(e.keyA, "broken")
	e.create(e.keyB, `{"image":"busybox","metadata":{"team":"a"}}`)

	tests := []struct {
		name      string
		query     string
		limit     int
		want      []string
		wantPages int
	}{
		{"all in one page", "", 0, append(slices.Clone(all), failed), 1},
		{"running, limit 2", "state=running", 2, all, 3},
		{"running, limit 5", "state=running", 5, all, 1},
		{"failed", "state=failed", 0, []string{failed}, 1},
		{"two states", "state=failed,running", 0, append(slices.Clone(all), failed), 1},
		{"repeated state", "state=failed&state=running", 0, append(slices.Clone(all), failed), 1},
		{"metadata", "metadata=team%3Da", 0, teamA, 1},
		{"metadata, limit 2", "metadata=team%3Da", 2, teamA, 2},
		{"two metadata", "metadata=team%3Da&metadata=n%3D2", 0, []string{all[2]}, 1},
		{"metadata and state", "metadata=team%3Da&state=failed", 0, nil, 1},
		{"metadata without match", "metadata=team%3Dz", 0, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, pages := e.listAll(e.keyA, tt.query, tt.limit)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("IDs (-want +got):\n%s", diff)
			}
			if pages != tt.wantPages {
				t.Errorf("%d pages, want %d", pages, tt.wantPages)
			}
		})
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	for _, by := range []string{"id", "name"} {
		t.Run(by, func(t *testing.T) {
			sb := e.create(e.keyA, `{"image":"busybox","name":"gone"}`)
			ref := sb.ID
			if by == "name" {
				ref = sb.Name
			}
			status, body := e.do("DELETE", "/v1/sandboxes/"+ref, e.keyA, "")
			if status != http.StatusNoContent || len(body) != 0 {
				t.Fatalf("DELETE: status %d body %q, want 204 and no body", status, body)
			}
			status, body = e.do("GET", "/v1/sandboxes/"+sb.ID, e.keyA, "")
			checkAPIError(t, status, body, 404, rest.Error{Code: "not_found", Message: "sandbox " + sb.ID + " not found"})
		})
	}
}

func TestDeleteFailed(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	id := e.createFailed(e.keyA, "broken")
	e.doJSON("DELETE", "/v1/sandboxes/"+id, e.keyA, "", http.StatusNoContent, nil)
	status, body := e.do("GET", "/v1/sandboxes/"+id, e.keyA, "")
	checkAPIError(t, status, body, 404, rest.Error{Code: "not_found", Message: "sandbox " + id + " not found"})
}

func TestSetTimeout(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"image":"busybox","name":"t"}`)
	e.clock.Advance(10 * time.Second)
	now := t0.Add(10 * time.Second)
	tests := []struct {
		name        string
		ref, body   string
		wantTimeout int64
		wantExpires *time.Time
	}{
		{"by id", sb.ID, `{"timeout":60}`, 60, timePtr(now.Add(60 * time.Second))},
		{"by name", "t", `{"timeout":3600}`, 3600, timePtr(now.Add(time.Hour))},
		{"zero removes it", sb.ID, `{"timeout":0}`, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got rest.Sandbox
			e.doJSON("POST", "/v1/sandboxes/"+tt.ref+"/timeout", e.keyA, tt.body, http.StatusOK, &got)
			var stored rest.Sandbox
			e.doJSON("GET", "/v1/sandboxes/"+sb.ID, e.keyA, "", http.StatusOK, &stored)
			for what, sb := range map[string]rest.Sandbox{"response": got, "stored": stored} {
				if sb.Timeout != tt.wantTimeout {
					t.Errorf("%s timeout = %d, want %d", what, sb.Timeout, tt.wantTimeout)
				}
				if diff := cmp.Diff(tt.wantExpires, sb.ExpiresAt); diff != "" {
					t.Errorf("%s expires_at (-want +got):\n%s", what, diff)
				}
			}
		})
	}
}

func TestReaper(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	short := e.create(e.keyA, `{"image":"busybox","timeout":60}`)
	long := e.create(e.keyA, `{"image":"busybox","timeout":120}`)
	never := e.create(e.keyB, `{"image":"busybox","timeout":0}`)
	failed := e.createFailed(e.keyA, "broken")
	steps := []struct {
		advance time.Duration
		alive   []string
	}{
		{59 * time.Second, []string{short.ID, long.ID, never.ID, failed}},
		{time.Second, []string{long.ID, never.ID, failed}}, // expires_at == now is expired
		{24 * time.Hour, []string{never.ID, failed}},
	}
	for _, step := range steps {
		e.clock.Advance(step.advance)
		e.srv.reap(context.Background())
		var alive []string
		for _, id := range []string{short.ID, long.ID, never.ID, failed} {
			if _, err := e.store.Snapshot().Sandbox(id); err == nil {
				alive = append(alive, id)
			}
		}
		if diff := cmp.Diff(step.alive, alive); diff != "" {
			t.Errorf("at %v: alive sandboxes (-want +got):\n%s", e.clock.Now().Sub(t0), diff)
		}
	}
	status, body := e.do("GET", "/v1/sandboxes/"+short.ID, e.keyA, "")
	checkAPIError(t, status, body, 404, rest.Error{Code: "not_found", Message: "sandbox " + short.ID + " not found"})
	if m := e.metricsText(); !strings.Contains(m, "\nden_sandbox_timeouts_total 2\n") {
		t.Errorf("metrics lack den_sandbox_timeouts_total 2:\n%s", m)
	}
}

// TestReaperOnlyWhileLeading: a server that does not lead (a den server
// follower) leaves timers to the leader; it acts once it leads.
func TestReaperOnlyWhileLeading(t *testing.T) {
	t.Parallel()
	leading := false
	e := newTestEnv(t, func(c *Config) { c.Leading = func() bool { return leading } })
	sb := e.create(e.keyA, `{"image":"busybox","timeout":60}`)
	e.clock.Advance(time.Hour)
	e.srv.reap(context.Background())
	if _, err := e.store.Snapshot().Sandbox(sb.ID); err != nil {
		t.Fatalf("a follower's reaper removed the expired sandbox: %v", err)
	}
	leading = true
	e.srv.reap(context.Background())
	if _, err := e.store.Snapshot().Sandbox(sb.ID); !errdefs.IsNotFound(err) {
		t.Fatalf("the leader's reaper left the expired sandbox: %v", err)
	}
}

// TestTenantIsolation checks that tenant B can neither see nor touch tenant
// A's sandbox, by ID or by name, and that names are per tenant.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"image":"busybox","name":"mine"}`)
	for _, ref := range []string{sb.ID, "mine"} {
		tests := []struct {
			method, path, body string
		}{
			{"GET", "/v1/sandboxes/" + ref, ""},
			{"DELETE", "/v1/sandboxes/" + ref, ""},
			{"POST", "/v1/sandboxes/" + ref + "/timeout", `{"timeout":1}`},
			{"GET", "/v1/sandboxes/" + ref + "/envd/health", ""},
			{"POST", "/v1/sandboxes/" + ref + "/envd/process.Process/Start", `{"process":{"cmd":"true"}}`},
		}
		for _, tt := range tests {
			t.Run(tt.method+" "+tt.path, func(t *testing.T) {
				status, body := e.do(tt.method, tt.path, e.keyB, tt.body)
				checkAPIError(t, status, body, 404, rest.Error{Code: "not_found", Message: "sandbox " + ref + " not found"})
			})
		}
	}
	if ids, _ := e.listAll(e.keyB, "", 0); len(ids) != 0 {
		t.Errorf("tenant B lists %v, want nothing", ids)
	}
	var got rest.Sandbox
	e.doJSON("GET", "/v1/sandboxes/"+sb.ID, e.keyA, "", http.StatusOK, &got)
	if diff := cmp.Diff(sb, got); diff != "" {
		t.Errorf("tenant A's sandbox changed (-before +after):\n%s", diff)
	}
	theirs := e.create(e.keyB, `{"image":"busybox","name":"mine"}`)
	e.doJSON("GET", "/v1/sandboxes/mine", e.keyB, "", http.StatusOK, &got)
	if got.ID != theirs.ID {
		t.Errorf("tenant B's \"mine\" is %s, want %s", got.ID, theirs.ID)
	}
}

func TestInfoAndImages(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	var info rest.Info
	e.doJSON("GET", "/v1/info", e.keyA, "", http.StatusOK, &info)
	want := rest.Info{Version: "test", Runtimes: []string{"stub"}, Node: nodeID,
		RuntimeDetails: []rest.RuntimeInfo{{Name: "stub", Default: true, Suspend: true, Pool: true}}}
	if diff := cmp.Diff(want, info); diff != "" {
		t.Errorf("info (-want +got):\n%s", diff)
	}
	var list rest.ImageList
	e.doJSON("GET", "/v1/images", e.keyA, "", http.StatusOK, &list)
	if len(list.Images) != 1 || list.Images[0].Name != "busybox" || list.Images[0].Size == 0 {
		t.Fatalf("images = %+v, want busybox only", list.Images)
	}
	var im rest.Image
	e.doJSON("GET", "/v1/images/busybox", e.keyA, "", http.StatusOK, &im)
	if diff := cmp.Diff(list.Images[0], im); diff != "" {
		t.Errorf("GET /v1/images/busybox (-list +get):\n%s", diff)
	}
}

func (e *testEnv) metricsText() string {
	e.t.Helper()
	resp, err := e.client.Get(e.url + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		e.t.Fatalf("GET /metrics: status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return string(b)
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	e.create(e.keyA, `{"image":"busybox"}`)
	e.createFailed(e.keyA, "broken")
	m := e.metricsText()
	for _, want := range []string{
		"# TYPE den_sandbox_create_seconds histogram\n",
		"\nden_sandbox_create_seconds_count 1\n",
		"\nden_sandbox_create_failures_total 1\n",
		"\nden_sandbox_timeouts_total 0\n",
		"\ngo_goroutines ",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	status, _ := e.do("GET", "/health", "", "")
	if status != http.StatusNoContent {
		t.Errorf("GET /health: status %d, want 204", status)
	}
}

// TestCreateRuntime checks that a create names a runtime the node runs:
// the record carries it, and an unknown one is a 400 naming those there are.
func TestCreateRuntime(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"image":"busybox","runtime":"stub"}`)
	if sb.Runtime != "stub" {
		t.Errorf("runtime of a create that asked for stub = %q", sb.Runtime)
	}
	if def := e.create(e.keyA, `{"image":"busybox"}`); def.Runtime != "stub" {
		t.Errorf("runtime of a create that named none = %q, want the default stub", def.Runtime)
	}
	status, body := e.do("POST", "/v1/sandboxes", e.keyA, `{"image":"busybox","runtime":"firecracker"}`)
	if status != http.StatusBadRequest || !strings.Contains(string(body), `unknown runtime \"firecracker\"`) || !strings.Contains(string(body), "runs stub") {
		t.Errorf("create on an unknown runtime: %d %s", status, body)
	}
}
