package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/store"
)

// addAdminKeyOf stores an admin key of tenant and returns its secret.
func (e *testEnv) addAdminKeyOf(tenant string) string {
	e.t.Helper()
	secret, hash, err := NewAPIKey()
	if err != nil {
		e.t.Fatal(err)
	}
	k := &store.APIKey{ID: "admin-" + tenant, Tenant: tenant, Hash: hash, Admin: true}
	if err := e.store.PutAPIKey(context.Background(), k); err != nil {
		e.t.Fatal(err)
	}
	return secret
}

// TestTenantsAndKeys: admins manage tenants and keys; a tenant's keys
// see their own tenant only, and anything of another is a 404.
func TestTenantsAndKeys(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	admin := e.addAdminKeyOf("default")
	var ten rest.Tenant
	e.doJSON("POST", "/v1/tenants", admin, `{"name":"initech","quota":{"sandboxes":2,"vcpus":4},"rate_limit":{"per_second":50,"burst":100}}`, http.StatusCreated, &ten)
	if ten.Name != "initech" || ten.Quota.Sandboxes != 2 || ten.Quota.VCPUs != 4 || ten.RateLimit.Burst != 100 || ten.Usage != (rest.Quota{}) {
		t.Fatalf("created tenant: %+v", ten)
	}
	status, body := e.do("POST", "/v1/tenants", admin, `{"name":"initech"}`)
	checkAPIError(t, status, body, 409, rest.Error{Code: "already_exists", Message: "tenant initech exists"})
	status, body = e.do("POST", "/v1/tenants", admin, `{"name":"Bad_Name"}`)
	if status != 400 || !strings.Contains(string(body), "tenant name") {
		t.Fatalf("bad name: %d %s", status, body)
	}
	status, body = e.do("POST", "/v1/tenants", e.keyA, `{"name":"mine"}`)
	checkAPIError(t, status, body, 403, rest.Error{Code: "permission_denied", Message: "only an admin API key may create tenants"})

	// A key for initech, made by the admin; shown once, then listed
	// without its secret.
	var made rest.CreateAPIKeyResponse
	e.doJSON("POST", "/v1/keys", admin, `{"tenant":"initech","name":"ci"}`, http.StatusCreated, &made)
	if !strings.HasPrefix(made.Secret, APIKeyPrefix) || made.Key.Tenant != "initech" || made.Key.Admin {
		t.Fatalf("made key: %+v", made)
	}
	key := made.Secret
	var keys []rest.APIKey
	e.doJSON("GET", "/v1/keys", key, "", http.StatusOK, &keys)
	if len(keys) != 1 || keys[0].ID != made.Key.ID || !keys[0].Current {
		t.Fatalf("initech's keys: %+v", keys)
	}
	var e2b rest.CreateAPIKeyResponse
	e.doJSON("POST", "/v1/keys", key, `{"format":"e2b"}`, http.StatusCreated, &e2b)
	if !strings.HasPrefix(e2b.Secret, E2BKeyPrefix) || len(e2b.Secret) != 44 || e2b.Key.Tenant != "initech" {
		t.Fatalf("e2b key: %+v", e2b)
	}

	// What initech's key may not do, or see.
	for _, tt := range []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/v1/tenants/default", "", 404},
		{"GET", "/v1/tenants/" + tenantA, "", 404},
		{"PATCH", "/v1/tenants/initech", `{"quota":{"sandboxes":100}}`, 403},
		{"DELETE", "/v1/tenants/" + tenantA, "", 403},
		{"POST", "/v1/keys", `{"admin":true}`, 403},
		{"POST", "/v1/keys", `{"tenant":"` + tenantA + `"}`, 404},
		{"GET", "/v1/keys?tenant=" + tenantA, "", 404},
		{"DELETE", "/v1/keys/key-" + tenantA, "", 404},
		{"DELETE", "/v1/keys/admin-default", "", 404},
	} {
		status, body := e.do(tt.method, tt.path, key, tt.body)
		if status != tt.status {
			t.Errorf("%s %s with initech's key: %d %s, want %d", tt.method, tt.path, status, body, tt.status)
		}
	}
	var list []rest.Tenant
	e.doJSON("GET", "/v1/tenants", key, "", http.StatusOK, &list)
	if len(list) != 1 || list[0].Name != "initech" {
		t.Fatalf("initech lists tenants %+v", list)
	}

	// Revoking a key stops it at once; the last admin key stays.
	e.doJSON("DELETE", "/v1/keys/"+e2b.Key.ID, key, "", http.StatusNoContent, nil)
	status, _ = e.do("GET", "/v1/sandboxes", e2b.Secret, "")
	if status != 401 {
		t.Fatalf("revoked key: %d, want 401", status)
	}
	status, body = e.do("DELETE", "/v1/keys/admin-default", admin, "")
	checkAPIError(t, status, body, 409, rest.Error{Code: "failed_precondition", Message: "key admin-default is the last admin key: create another admin key first"})

	// A tenant that holds a sandbox is not deleted; once empty it is,
	// with its keys.
	sb := e.create(key, `{"image":"busybox"}`)
	status, body = e.do("DELETE", "/v1/tenants/initech", admin, "")
	if status != 409 || !strings.Contains(string(body), "still holds 1 sandboxes") {
		t.Fatalf("delete a tenant with a sandbox: %d %s", status, body)
	}
	e.doJSON("DELETE", "/v1/sandboxes/"+sb.ID, key, "", http.StatusNoContent, nil)
	e.doJSON("DELETE", "/v1/tenants/initech", admin, "", http.StatusNoContent, nil)
	if status, _ := e.do("GET", "/v1/sandboxes", key, ""); status != 401 {
		t.Fatalf("a deleted tenant's key: %d, want 401", status)
	}
}

// TestQuotas: creates, forks, resumes and snapshots past a tenant's
// quota are 429 resource_exhausted, and free room lets them through.
func TestQuotas(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	admin := e.addAdminKeyOf("default")
	e.doJSON("PATCH", "/v1/tenants/"+tenantA, admin, "", http.StatusBadRequest, nil) // empty body
	status, body := e.do("PATCH", "/v1/tenants/"+tenantA, admin, `{}`)
	if status != 404 {
		t.Fatalf("PATCH of a tenant without a record: %d %s, want 404", status, body)
	}
	e.doJSON("POST", "/v1/tenants", admin, `{"name":"`+tenantA+`","quota":{"sandboxes":2,"vcpus":3,"memory_mb":1024,"snapshots":1}}`, http.StatusCreated, nil)

	one := e.create(e.keyA, `{"image":"busybox","cpus":2,"memory_mb":512}`)
	status, body = e.do("POST", "/v1/sandboxes", e.keyA, `{"image":"busybox","cpus":2,"memory_mb":256}`)
	checkAPIError(t, status, body, 429, rest.Error{Code: "resource_exhausted",
		Message: "tenant acme is at its quota of 3 vCPUs (it holds 2, this needs 2 more): delete or suspend some, or ask an admin to raise it (den tenant set acme)"})
	status, body = e.do("POST", "/v1/sandboxes", e.keyA, `{"image":"busybox","cpus":1,"memory_mb":768}`)
	if status != 429 || !strings.Contains(string(body), "1024 MiB of memory") {
		t.Fatalf("over memory: %d %s", status, body)
	}
	two := e.create(e.keyA, `{"image":"busybox","cpus":1,"memory_mb":256}`)
	status, body = e.do("POST", "/v1/sandboxes", e.keyA, `{"image":"busybox","cpus":0.5,"memory_mb":128}`)
	if status != 429 || !strings.Contains(string(body), "quota of 2 sandboxes") {
		t.Fatalf("over sandboxes: %d %s", status, body)
	}
	// Tenant B has no record: no limits.
	e.create(e.keyB, `{"image":"busybox","cpus":4}`)
	// A suspended sandbox frees its CPUs and memory, not its place; its
	// resume needs room again.
	e.doJSON("POST", "/v1/sandboxes/"+one.ID+"/suspend", e.keyA, "", http.StatusOK, nil)
	var ten rest.Tenant
	e.doJSON("GET", "/v1/tenants/"+tenantA, e.keyA, "", http.StatusOK, &ten)
	if ten.Usage != (rest.Quota{Sandboxes: 2, VCPUs: 1, MemoryMB: 256}) {
		t.Fatalf("usage with one suspended: %+v", ten.Usage)
	}
	e.doJSON("PATCH", "/v1/tenants/"+tenantA, admin, `{"quota":{"sandboxes":3,"vcpus":2,"memory_mb":1024,"snapshots":1}}`, http.StatusOK, nil)
	status, body = e.do("POST", "/v1/sandboxes/"+one.ID+"/resume", e.keyA, "")
	if status != 429 || !strings.Contains(string(body), "quota of 2 vCPUs") {
		t.Fatalf("resume over the vCPU quota: %d %s", status, body)
	}
	e.doJSON("DELETE", "/v1/sandboxes/"+two.ID, e.keyA, "", http.StatusNoContent, nil)
	e.doJSON("POST", "/v1/sandboxes/"+one.ID+"/resume", e.keyA, "", http.StatusOK, nil)
	// Snapshots: one allowed.
	e.doJSON("POST", "/v1/snapshots", e.keyA, fmt.Sprintf(`{"sandbox":%q}`, one.ID), http.StatusCreated, nil)
	status, body = e.do("POST", "/v1/snapshots", e.keyA, fmt.Sprintf(`{"sandbox":%q}`, one.ID))
	if status != 429 || !strings.Contains(string(body), "quota of 1 snapshots") {
		t.Fatalf("over snapshots: %d %s", status, body)
	}
}

// TestRateLimit: a tenant's requests past its bucket are 429 with
// Retry-After, other tenants are not affected, and tokens come back with
// time.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	admin := e.addAdminKeyOf("default")
	e.doJSON("POST", "/v1/tenants", admin, `{"name":"`+tenantA+`","rate_limit":{"per_second":0.5,"burst":3}}`, http.StatusCreated, nil)
	for i := range 3 {
		if status, body := e.do("GET", "/v1/sandboxes", e.keyA, ""); status != 200 {
			t.Fatalf("request %d within the burst: %d %s", i, status, body)
		}
	}
	req, _ := http.NewRequest("GET", e.url+"/v1/sandboxes", nil)
	req.Header.Set("X-API-Key", e.keyA)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" {
		t.Fatalf("request past the burst: %d, Retry-After %q; want 429 and 2", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if status, _ := e.do("GET", "/v1/sandboxes", e.keyB, ""); status != 200 {
		t.Fatalf("tenant B while A is limited: %d", status)
	}
	e.clock.Advance(2 * time.Second)
	if status, body := e.do("GET", "/v1/sandboxes", e.keyA, ""); status != 200 {
		t.Fatalf("after the wait: %d %s", status, body)
	}
}

// TestTenantIsolationEveryRoute: every route that names a sandbox,
// snapshot or pool answers another tenant's key with 404, as for one
// that does not exist.
func TestTenantIsolationEveryRoute(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"image":"busybox","name":"mine"}`)
	var snap rest.Snapshot
	e.doJSON("POST", "/v1/snapshots", e.keyA, fmt.Sprintf(`{"sandbox":%q,"name":"snapa"}`, sb.ID), http.StatusCreated, &snap)
	var pool rest.Pool
	e.doJSON("POST", "/v1/pools", e.keyA, `{"image":"busybox","size":1,"name":"poola"}`, http.StatusCreated, &pool)
	for _, tt := range []struct{ method, path, body string }{
		{"GET", "/v1/sandboxes/" + sb.ID, ""},
		{"GET", "/v1/sandboxes/mine", ""},
		{"DELETE", "/v1/sandboxes/" + sb.ID, ""},
		{"POST", "/v1/sandboxes/" + sb.ID + "/timeout", `{"timeout":1}`},
		{"POST", "/v1/sandboxes/" + sb.ID + "/suspend", ""},
		{"POST", "/v1/sandboxes/" + sb.ID + "/resume", ""},
		{"POST", "/v1/sandboxes/" + sb.ID + "/fork", `{}`},
		{"GET", "/v1/sandboxes/" + sb.ID + "/network", ""},
		{"PUT", "/v1/sandboxes/" + sb.ID + "/network", `{"internet":false}`},
		{"GET", "/v1/sandboxes/" + sb.ID + "/envd/files?path=/etc/hostname", ""},
		{"POST", "/v1/sandboxes/" + sb.ID + "/envd/process.Process/List", `{}`},
		{"POST", "/v1/snapshots", fmt.Sprintf(`{"sandbox":%q}`, sb.ID)},
		{"POST", "/v1/sandboxes", fmt.Sprintf(`{"snapshot":%q}`, snap.ID)},
		{"GET", "/v1/snapshots/" + snap.ID, ""},
		{"GET", "/v1/snapshots/snapa", ""},
		{"DELETE", "/v1/snapshots/" + snap.ID, ""},
		{"POST", "/v1/pools", fmt.Sprintf(`{"snapshot":%q,"size":1}`, snap.ID)},
		{"GET", "/v1/pools/" + pool.ID, ""},
		{"GET", "/v1/pools/poola", ""},
		{"PATCH", "/v1/pools/" + pool.ID, `{"size":2}`},
		{"DELETE", "/v1/pools/" + pool.ID, ""},
		{"POST", "/v1/sandboxes", fmt.Sprintf(`{"pool":%q}`, pool.ID)},
	} {
		status, body := e.do(tt.method, tt.path, e.keyB, tt.body)
		if status != 404 {
			t.Errorf("%s %s with another tenant's key: %d %s, want 404", tt.method, tt.path, status, body)
		}
	}
	var got rest.Sandbox
	e.doJSON("GET", "/v1/sandboxes/"+sb.ID, e.keyA, "", http.StatusOK, &got)
	if got.State != rest.StateRunning {
		t.Fatalf("tenant A's sandbox after B's attempts: %s", got.State)
	}
}

// TestTenantPlacement: a tenant's dedicated node pools are set by an
// admin, shown, and owned by one tenant at most.
func TestTenantPlacement(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	admin := e.addAdminKeyOf("default")
	var ten rest.Tenant
	e.doJSON("POST", "/v1/tenants", admin, `{"name":"acme","placement":{"node_pools":["acme-gpu"],"overflow_to_shared":true}}`, http.StatusCreated, &ten)
	if len(ten.Placement.NodePools) != 1 || ten.Placement.NodePools[0] != "acme-gpu" || !ten.Placement.OverflowToShared {
		t.Fatalf("created: %+v", ten.Placement)
	}
	e.doJSON("POST", "/v1/tenants", admin, `{"name":"globex"}`, http.StatusCreated, &ten)
	if ten.Placement.NodePools == nil || len(ten.Placement.NodePools) != 0 {
		t.Fatalf("a tenant with no pools shows %#v, want []", ten.Placement.NodePools)
	}
	status, body := e.do("PATCH", "/v1/tenants/globex", admin, `{"placement":{"node_pools":["acme-gpu"]}}`)
	checkAPIError(t, status, body, 409, rest.Error{Code: "conflict", Message: "node pool acme-gpu is tenant acme's"})
	status, body = e.do("PATCH", "/v1/tenants/globex", admin, `{"placement":{"node_pools":["shared"]}}`)
	if status != 400 {
		t.Fatalf("the shared pool as a dedicated one: %d %s", status, body)
	}
	e.doJSON("PATCH", "/v1/tenants/acme", admin, `{"placement":{"node_pools":[]}}`, http.StatusOK, &ten)
	e.doJSON("PATCH", "/v1/tenants/globex", admin, `{"placement":{"node_pools":["acme-gpu"]}}`, http.StatusOK, &ten)
	if len(ten.Placement.NodePools) != 1 || ten.Placement.OverflowToShared {
		t.Fatalf("after the move: %+v", ten.Placement)
	}
}

// TestQuotaRacingCreates: many creates at once, and exactly the quota's
// number get in (the admissions reserve before they write).
func TestQuotaRacingCreates(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	admin := e.addAdminKeyOf("default")
	e.doJSON("POST", "/v1/tenants", admin, `{"name":"`+tenantA+`","quota":{"sandboxes":5}}`, http.StatusCreated, nil)
	var wg sync.WaitGroup
	statuses := make([]int, 20)
	for i := range statuses {
		wg.Go(func() {
			statuses[i], _ = e.do("POST", "/v1/sandboxes", e.keyA, `{"image":"busybox","cpus":0.1,"memory_mb":128}`)
		})
	}
	wg.Wait()
	count := map[int]int{}
	for _, s := range statuses {
		count[s]++
	}
	if count[http.StatusCreated] != 5 || count[http.StatusTooManyRequests] != 15 {
		t.Fatalf("statuses of 20 racing creates under a quota of 5: %v", count)
	}
}
