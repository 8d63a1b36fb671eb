package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// as is the instance seen through another API key.
func (in *instance) as(key string) *instance {
	c := *in
	c.key = key
	return &c
}

// TestTenants drives tenants, keys, quotas and rate limits through the
// CLI and the E2B facade of a real den: another tenant's sandbox is
// "not found" on every path, quotas refuse with the quota named, a rate
// limit answers 429 with Retry-After, and a revoked key stops at once.
func TestTenants(t *testing.T) {
	den := startDen(t, "")
	if out := den.mustDen("tenant", "create", "acme", "--max-sandboxes", "1", "--max-vcpus", "2"); out != "acme\n" {
		t.Fatalf("den tenant create printed %q", out)
	}
	secret := strings.TrimSpace(den.mustDen("key", "create", "--tenant", "acme", "--name", "ci"))
	e2bKey := strings.TrimSpace(den.mustDen("key", "create", "--tenant", "acme", "--e2b"))
	if !strings.HasPrefix(secret, "den_") || !strings.HasPrefix(e2bKey, "e2b_") {
		t.Fatalf("keys: %q %q", secret, e2bKey)
	}
	acme := den.as(secret)
	t.Cleanup(func() { den.as(e2bKey).removeAll() }) // acme's sandboxes; den's cleanup removes the admin's
	mine := den.create("--name", "mine")

	t.Run("another tenant's sandbox is not found", func(t *testing.T) {
		if ids := jsonIDs(acme.mustDen("ls", "--json")); len(ids) != 0 {
			t.Fatalf("acme lists %v", ids)
		}
		for _, args := range [][]string{
			{"get", mine}, {"get", "mine"}, {"exec", mine, "--", "true"}, {"cp", mine + ":/etc/hostname", t.TempDir() + "/h"},
			{"net", "get", mine}, {"net", "set", mine, "--internet=false"}, {"suspend", mine}, {"resume", mine},
			{"snapshot", "create", mine}, {"fork", mine}, {"rm", mine},
		} {
			res := acme.den(nil, args...)
			if res.code == 0 || !strings.Contains(res.stderr, "not found") {
				t.Errorf("den %s with acme's key: exit %d, stderr %q; want a not-found error", strings.Join(args, " "), res.code, res.stderr)
			}
		}
		for _, path := range []string{"/sandboxes/" + mine, "/sandboxes/" + mine + "/metrics"} {
			req, _ := http.NewRequest("GET", den.url+path, nil)
			req.Header.Set("X-API-Key", e2bKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 404 {
				t.Errorf("E2B GET %s with acme's key: %d, want 404", path, resp.StatusCode)
			}
		}
		if got := den.mustDen("exec", mine, "--", "echo", "still mine"); got != "still mine\n" {
			t.Fatalf("owner's exec after acme's attempts: %q", got)
		}
	})

	t.Run("quota", func(t *testing.T) {
		acme.create()
		res := acme.den(nil, "create", testImage)
		if res.code == 0 || !strings.Contains(res.stderr, "quota of 1 sandboxes") {
			t.Fatalf("second create over the quota: exit %d, stderr %q", res.code, res.stderr)
		}
		var ten struct {
			Usage struct{ Sandboxes int } `json:"usage"`
		}
		if err := json.Unmarshal([]byte(acme.mustDen("tenant", "get", "acme", "--json")), &ten); err != nil || ten.Usage.Sandboxes != 1 {
			t.Fatalf("acme's usage: %+v, %v", ten, err)
		}
	})

	t.Run("rate limit", func(t *testing.T) {
		den.mustDen("tenant", "set", "acme", "--rate", "0.2", "--burst", "2")
		var codes []int
		retry := ""
		for range 3 {
			req, _ := http.NewRequest("GET", den.url+"/v1/sandboxes", nil)
			req.Header.Set("X-API-Key", secret)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			codes = append(codes, resp.StatusCode)
			if resp.StatusCode == 429 {
				retry = resp.Header.Get("Retry-After")
			}
		}
		if codes[2] != 429 || retry == "" || retry == "0" {
			t.Fatalf("three requests in a burst of 2: %v, Retry-After %q; want the third 429 with Retry-After", codes, retry)
		}
		if res := acme.den(nil, "ls"); res.code == 0 || !strings.Contains(res.stderr, "rate limit") {
			t.Fatalf("den ls over the rate limit: exit %d, stderr %q", res.code, res.stderr)
		}
		den.mustDen("tenant", "set", "acme", "--rate", "0")
		acme.mustDen("ls")
	})

	t.Run("revoke", func(t *testing.T) {
		var keys []struct{ ID, Name string }
		if err := json.Unmarshal([]byte(den.mustDen("key", "ls", "--tenant", "acme", "--json")), &keys); err != nil {
			t.Fatal(err)
		}
		id := ""
		for _, k := range keys {
			if k.Name == "ci" {
				id = k.ID
			}
		}
		if len(keys) != 2 || id == "" {
			t.Fatalf("acme's keys: %+v", keys)
		}
		den.mustDen("key", "revoke", id)
		if res := acme.den(nil, "ls"); res.code == 0 || !strings.Contains(res.stderr, "invalid API key") {
			t.Fatalf("den ls with a revoked key: exit %d, stderr %q", res.code, res.stderr)
		}
	})

	t.Run("tenant rm", func(t *testing.T) {
		res := den.den(nil, "tenant", "rm", "acme")
		if res.code == 0 || !strings.Contains(res.stderr, "still holds 1 sandboxes") {
			t.Fatalf("rm of a tenant with a sandbox: exit %d, stderr %q", res.code, res.stderr)
		}
		other := den.as(e2bKey) // acme's remaining key
		for _, id := range jsonIDs(other.mustDen("ls", "--json")) {
			other.mustDen("rm", id)
		}
		den.mustDen("tenant", "rm", "acme")
		if res := other.den(nil, "ls"); res.code == 0 || !strings.Contains(res.stderr, "invalid API key") {
			t.Fatalf("den ls with a key of a deleted tenant: exit %d, stderr %q", res.code, res.stderr)
		}
	})
}
