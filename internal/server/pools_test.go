package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/denhq/den/api/rest"
)

func TestPools(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	var pool rest.Pool
	e.doJSON("POST", "/v1/pools", e.keyA, `{"name":"web","image":"busybox","size":3}`, http.StatusCreated, &pool)
	// Sizes left zero are the create defaults, so a plain create matches.
	if !strings.HasPrefix(pool.ID, "pool-") || pool.Name != "web" || pool.Image != "busybox" || pool.Size != 3 || pool.Ready != 3 ||
		pool.CPUs != rest.DefaultCPUs || pool.MemoryMB != rest.DefaultMemoryMB || pool.DiskMB != rest.DefaultDiskMB || pool.Runtime != "stub" {
		t.Fatalf("created pool: %+v", pool)
	}
	var got rest.Pool
	e.doJSON("GET", "/v1/pools/web", e.keyA, "", http.StatusOK, &got)
	if got.ID != pool.ID {
		t.Fatalf("get by name: %+v", got)
	}
	e.doJSON("PATCH", "/v1/pools/web", e.keyA, `{"size":5}`, http.StatusOK, &got)
	if got.Size != 5 || got.ID != pool.ID {
		t.Fatalf("resized pool: %+v", got)
	}
	// Another tenant sees none of it.
	e.doJSON("GET", "/v1/pools/"+pool.ID, e.keyB, "", http.StatusNotFound, nil)
	e.doJSON("POST", "/v1/sandboxes", e.keyB, `{"pool":"`+pool.ID+`"}`, http.StatusNotFound, nil)
	var list rest.PoolList
	e.doJSON("GET", "/v1/pools", e.keyB, "", http.StatusOK, &list)
	if len(list.Pools) != 0 {
		t.Fatalf("tenant B lists %v", list.Pools)
	}
	e.doJSON("GET", "/v1/pools", e.keyA, "", http.StatusOK, &list)
	if len(list.Pools) != 1 || list.Pools[0].ID != pool.ID {
		t.Fatalf("tenant A lists %v", list.Pools)
	}

	// A create naming the pool gets the pool's image and sizes.
	sb := e.create(e.keyA, `{"pool":"web","env":{"K":"V"},"name":"claimed"}`)
	if sb.Image != "busybox" || sb.CPUs != rest.DefaultCPUs || sb.MemoryMB != rest.DefaultMemoryMB || sb.DiskMB != rest.DefaultDiskMB ||
		sb.Name != "claimed" || sb.State != rest.StateRunning {
		t.Fatalf("sandbox from pool: %+v", sb)
	}

	// A snapshot pool takes the snapshot's shape, and keeps its snapshot
	// from being deleted.
	src := e.create(e.keyA, `{"image":"busybox","memory_mb":128}`)
	var snap rest.Snapshot
	e.doJSON("POST", "/v1/snapshots", e.keyA, `{"sandbox":"`+src.ID+`","name":"warm"}`, http.StatusCreated, &snap)
	var sp rest.Pool
	e.doJSON("POST", "/v1/pools", e.keyA, `{"snapshot":"warm","size":2}`, http.StatusCreated, &sp)
	if sp.Snapshot != snap.ID || sp.Image != "busybox" || sp.MemoryMB != 128 {
		t.Fatalf("snapshot pool: %+v", sp)
	}
	clone := e.create(e.keyA, `{"pool":"`+sp.ID+`"}`)
	if clone.FromSnapshot != snap.ID || clone.MemoryMB != 128 {
		t.Fatalf("sandbox from snapshot pool: %+v", clone)
	}
	e.doJSON("DELETE", "/v1/snapshots/warm", e.keyA, "", http.StatusConflict, nil)
	e.doJSON("DELETE", "/v1/pools/"+sp.ID, e.keyA, "", http.StatusNoContent, nil)
	e.doJSON("DELETE", "/v1/snapshots/warm", e.keyA, "", http.StatusNoContent, nil)

	e.doJSON("DELETE", "/v1/pools/web", e.keyA, "", http.StatusNoContent, nil)
	e.doJSON("GET", "/v1/pools/web", e.keyA, "", http.StatusNotFound, nil)
	e.doJSON("GET", "/v1/sandboxes/"+sb.ID, e.keyA, "", http.StatusOK, nil) // claimed sandboxes outlive the pool
}

// TestPoolErrors is TestErrors for pools.
func TestPoolErrors(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	e.doJSON("POST", "/v1/pools", e.keyA, `{"name":"taken","image":"busybox","size":1}`, http.StatusCreated, nil)
	tests := []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"no image", "POST", "/v1/pools", `{"size":1,"image":"nope"}`, http.StatusNotFound, "nope"},
		{"image and snapshot", "POST", "/v1/pools", `{"size":1,"image":"busybox","snapshot":"s"}`, http.StatusBadRequest, "an image or a snapshot, not both"},
		{"size", "POST", "/v1/pools", `{"size":257,"image":"busybox"}`, http.StatusBadRequest, "size must be between 0 and 256, got 257"},
		{"negative size", "POST", "/v1/pools", `{"size":-1,"image":"busybox"}`, http.StatusBadRequest, "size must be between 0 and 256"},
		{"memory", "POST", "/v1/pools", `{"size":1,"image":"busybox","memory_mb":1}`, http.StatusBadRequest, "memory_mb must be between"},
		{"bad name", "POST", "/v1/pools", `{"size":1,"image":"busybox","name":"Bad Name"}`, http.StatusBadRequest, `name "Bad Name" is invalid`},
		{"name taken", "POST", "/v1/pools", `{"size":1,"image":"busybox","name":"taken"}`, http.StatusConflict, `pool name "taken" is taken`},
		{"unknown field", "POST", "/v1/pools", `{"size":1,"image":"busybox","sise":2}`, http.StatusBadRequest, "unknown field"},
		{"snapshot with sizes", "POST", "/v1/pools", `{"size":1,"snapshot":"s","cpus":2}`, http.StatusBadRequest, "takes its cpus"},
		{"unknown snapshot", "POST", "/v1/pools", `{"size":1,"snapshot":"nope"}`, http.StatusNotFound, "snapshot nope not found"},
		// 4096 MiB budget: 9 spares of 512 MiB is 4608.
		{"over the memory budget", "POST", "/v1/pools", `{"size":9,"image":"busybox"}`, http.StatusConflict, "more than the 4096 MiB"},
		{"resize over the budget", "PATCH", "/v1/pools/taken", `{"size":100}`, http.StatusConflict, "more than the 4096 MiB"},
		{"resize without size", "PATCH", "/v1/pools/taken", `{}`, http.StatusBadRequest, "size is required"},
		{"resize unknown", "PATCH", "/v1/pools/nope", `{"size":1}`, http.StatusNotFound, "pool nope not found"},
		{"delete unknown", "DELETE", "/v1/pools/nope", "", http.StatusNotFound, "pool nope not found"},
		{"create from unknown pool", "POST", "/v1/sandboxes", `{"pool":"nope"}`, http.StatusNotFound, "pool nope not found"},
		{"unknown runtime", "POST", "/v1/pools", `{"size":1,"image":"busybox","runtime":"nope"}`, http.StatusBadRequest, `unknown runtime "nope"`},
		{"create from pool with image", "POST", "/v1/sandboxes", `{"pool":"taken","image":"busybox"}`, http.StatusBadRequest, "takes its image"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var apiErr rest.Error
			e.doJSON(tt.method, tt.path, e.keyA, tt.body, tt.status, &apiErr)
			if apiErr.Code == "" || !strings.Contains(apiErr.Message, tt.msg) {
				t.Fatalf("error %+v, want a message with %q", apiErr, tt.msg)
			}
		})
	}
}

// TestCreateClaimsOnce: on a node that keeps spares a create is claimed
// and recorded with one store write, running; a create over the tenant's
// quota takes no spare; a claim whose record is refused (a name taken) is
// given up and the create fails as it would have.
func TestCreateClaimsOnce(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	index := func(id string) uint64 {
		t.Helper()
		sb, err := e.store.Snapshot().Sandbox(id)
		if err != nil {
			t.Fatal(err)
		}
		return sb.ModifyIndex
	}
	// No spare: the create is recorded, then started (two writes).
	cold := e.create(e.keyA, `{"image":"busybox"}`)
	e.node.claims(1)
	sb := e.create(e.keyA, `{"image":"busybox","name":"first"}`)
	if sb.State != rest.StateRunning {
		t.Fatalf("claimed sandbox: state %s, want running", sb.State)
	}
	if got, want := index(sb.ID), index(cold.ID)+1; got != want {
		t.Errorf("the claimed create's record is at index %d, want %d (one write)", got, want)
	}
	if left, _ := e.node.claims(-1); left != 0 {
		t.Fatalf("spares left after a claim: %d, want 0", left)
	}
	cold2 := e.create(e.keyA, `{"image":"busybox"}`)
	if got, want := index(cold2.ID), index(sb.ID)+2; got != want {
		t.Errorf("a cold create's record is at index %d, want %d (two writes)", got, want)
	}

	e.node.claims(1)
	status, body := e.do("POST", "/v1/sandboxes", e.keyA, `{"image":"busybox","name":"first"}`)
	if status != http.StatusConflict {
		t.Fatalf("create with a taken name from a spare: %d %s, want 409", status, body)
	}
	if left, discarded := e.node.claims(-1); left != 0 || discarded != 1 {
		t.Errorf("after a refused record: %d spares left, %d discarded; want 0 and 1", left, discarded)
	}

	admin := e.addAdminKeyOf("default")
	e.doJSON("POST", "/v1/tenants", admin, `{"name":"`+tenantA+`","quota":{"sandboxes":3}}`, http.StatusCreated, nil)
	e.node.claims(1)
	status, body = e.do("POST", "/v1/sandboxes", e.keyA, `{"image":"busybox"}`)
	if status != http.StatusTooManyRequests {
		t.Fatalf("create over the quota: %d %s, want 429", status, body)
	}
	if left, discarded := e.node.claims(-1); left != 1 || discarded != 1 {
		t.Errorf("a create over the quota took a spare: %d left, %d discarded; want 1 and 1", left, discarded)
	}
}
