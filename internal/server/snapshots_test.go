package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/denhq/den/api/rest"
)

func TestSnapshotsAndFork(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	src := e.create(e.keyA, `{"image":"busybox","cpus":0.5,"memory_mb":128,"disk_mb":256,"timeout":600}`)

	var snap rest.Snapshot
	e.doJSON("POST", "/v1/snapshots", e.keyA, `{"sandbox":"`+src.ID+`","name":"base"}`, http.StatusCreated, &snap)
	if !strings.HasPrefix(snap.ID, "snap-") || snap.Name != "base" || snap.Sandbox != src.ID || snap.Image != "busybox" ||
		snap.Mode != rest.SnapshotModeMemory || snap.SizeBytes != 4096 || snap.CPUs != 0.5 || snap.MemoryMB != 128 || snap.DiskMB != 256 {
		t.Fatalf("created snapshot: %+v", snap)
	}
	var got rest.Snapshot
	e.doJSON("GET", "/v1/snapshots/base", e.keyA, "", http.StatusOK, &got)
	if got.ID != snap.ID {
		t.Fatalf("get by name: %+v", got)
	}
	// Another tenant sees none of it.
	e.doJSON("GET", "/v1/snapshots/"+snap.ID, e.keyB, "", http.StatusNotFound, nil)
	var list rest.SnapshotList
	e.doJSON("GET", "/v1/snapshots", e.keyB, "", http.StatusOK, &list)
	if len(list.Snapshots) != 0 {
		t.Fatalf("tenant B lists %v", list.Snapshots)
	}
	e.doJSON("POST", "/v1/sandboxes", e.keyB, `{"snapshot":"`+snap.ID+`"}`, http.StatusNotFound, nil)

	// The snapshot outlives its source; a sandbox created from it has the
	// source's size.
	e.doJSON("DELETE", "/v1/sandboxes/"+src.ID, e.keyA, "", http.StatusNoContent, nil)
	clone := e.create(e.keyA, `{"snapshot":"base","name":"clone"}`)
	if clone.ID == src.ID || clone.State != rest.StateRunning || clone.Image != "busybox" || clone.CPUs != 0.5 ||
		clone.MemoryMB != 128 || clone.DiskMB != 256 || clone.FromSnapshot != snap.ID || clone.Name != "clone" {
		t.Fatalf("sandbox from snapshot: %+v", clone)
	}

	var fork rest.ForkResponse
	e.doJSON("POST", "/v1/sandboxes/"+clone.ID+"/fork", e.keyA, `{"count":3}`, http.StatusCreated, &fork)
	seen := map[string]bool{clone.ID: true}
	for _, c := range fork.Sandboxes {
		if seen[c.ID] || c.State != rest.StateRunning || c.Timeout != 300 || c.Name != "" {
			t.Fatalf("fork copy: %+v", c)
		}
		seen[c.ID] = true
	}
	if len(fork.Sandboxes) != 3 || fork.Snapshot != "" {
		t.Fatalf("fork: %+v", fork)
	}
	e.doJSON("GET", "/v1/snapshots", e.keyA, "", http.StatusOK, &list)
	if len(list.Snapshots) != 1 || list.Snapshots[0].ID != snap.ID {
		t.Fatalf("the fork's checkpoint was kept: %+v", list.Snapshots)
	}
	e.doJSON("POST", "/v1/sandboxes/"+clone.ID+"/fork", e.keyA, "", http.StatusCreated, &fork) // empty body: one copy
	if len(fork.Sandboxes) != 1 {
		t.Fatalf("fork without a body made %d copies", len(fork.Sandboxes))
	}
	e.doJSON("POST", "/v1/sandboxes/"+clone.ID+"/fork", e.keyA, `{"count":2,"snapshot_name":"kept"}`, http.StatusCreated, &fork)
	e.doJSON("GET", "/v1/snapshots/kept", e.keyA, "", http.StatusOK, &got)
	if fork.Snapshot != got.ID || got.Sandbox != clone.ID {
		t.Fatalf("kept fork snapshot %+v, fork said %q", got, fork.Snapshot)
	}

	e.doJSON("DELETE", "/v1/snapshots/base", e.keyA, "", http.StatusNoContent, nil)
	e.doJSON("GET", "/v1/snapshots/"+snap.ID, e.keyA, "", http.StatusNotFound, nil)
	e.doJSON("GET", "/v1/sandboxes/"+clone.ID, e.keyA, "", http.StatusOK, nil) // clones outlive it
}

// TestSnapshotErrors is TestErrors for snapshots and fork.
func TestSnapshotErrors(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	running := e.create(e.keyA, `{"image":"busybox"}`).ID
	suspended := e.create(e.keyA, `{"image":"busybox"}`).ID
	e.doJSON("POST", "/v1/sandboxes/"+suspended+"/suspend", e.keyA, "", http.StatusOK, nil)
	var snap rest.Snapshot
	e.doJSON("POST", "/v1/snapshots", e.keyA, `{"sandbox":"`+running+`","name":"taken"}`, http.StatusCreated, &snap)
	ids := strings.NewReplacer("{running}", running, "{suspended}", suspended, "{snap}", snap.ID)

	bad := func(msg string) rest.Error { return rest.Error{Code: "invalid_argument", Message: msg} }
	notFound := func(msg string) rest.Error { return rest.Error{Code: "not_found", Message: msg} }
	tests := []struct {
		name         string
		method, path string
		key          string // "A" or "B"
		body         string
		wantStatus   int
		want         rest.Error
	}{
		{"get unknown snapshot", "GET", "/v1/snapshots/nosuch", "A", "", 404, notFound("snapshot nosuch not found")},
		{"get other tenant's snapshot", "GET", "/v1/snapshots/{snap}", "B", "", 404, notFound("snapshot {snap} not found")},
		{"delete unknown snapshot", "DELETE", "/v1/snapshots/nosuch", "A", "", 404, notFound("snapshot nosuch not found")},
		{"delete other tenant's snapshot", "DELETE", "/v1/snapshots/taken", "B", "", 404, notFound("snapshot taken not found")},
		{"snapshot without sandbox", "POST", "/v1/snapshots", "A", `{}`, 400, bad("sandbox is required")},
		{"snapshot unknown sandbox", "POST", "/v1/snapshots", "A", `{"sandbox":"nosuch"}`, 404, notFound("sandbox nosuch not found")},
		{"snapshot other tenant's sandbox", "POST", "/v1/snapshots", "B", `{"sandbox":"{running}"}`, 404, notFound("sandbox {running} not found")},
		{"snapshot suspended sandbox", "POST", "/v1/snapshots", "A", `{"sandbox":"{suspended}"}`, 409,
			rest.Error{Code: "failed_precondition", Message: "sandbox {suspended} is suspended: only a running sandbox can be snapshotted"}},
		{"snapshot name taken", "POST", "/v1/snapshots", "A", `{"sandbox":"{running}","name":"taken"}`, 409,
			rest.Error{Code: "already_exists", Message: `snapshot name "taken" is taken by snapshot {snap}`}},
		{"snapshot bad name", "POST", "/v1/snapshots", "A", `{"sandbox":"{running}","name":"Bad_Name"}`, 400,
			bad(`name "Bad_Name" is invalid: use 1-63 lowercase letters, digits and dashes`)},
		{"snapshot reserved name", "POST", "/v1/snapshots", "A", `{"sandbox":"{running}","name":"usage"}`, 400,
			bad(`name "usage" is reserved: choose another`)},
		{"snapshot filesystem mode on a runtime without it", "POST", "/v1/snapshots", "A", `{"sandbox":"{running}","mode":"filesystem"}`, 501,
			rest.Error{Code: "unsupported", Message: "runtime stub cannot snapshot a sandbox's filesystem"}},
		{"snapshot bad mode", "POST", "/v1/snapshots", "A", `{"sandbox":"{running}","mode":"disk"}`, 400,
			bad(`mode must be "memory" or "filesystem", got "disk"`)},
		{"create from unknown snapshot", "POST", "/v1/sandboxes", "A", `{"snapshot":"nosuch"}`, 404, notFound("snapshot nosuch not found")},
		{"create from snapshot with image", "POST", "/v1/sandboxes", "A", `{"snapshot":"taken","image":"busybox"}`, 400,
			bad("a sandbox created from a snapshot takes its image, cpus, memory_mb, disk_mb, env and user from the snapshot: leave them unset")},
		{"fork unknown", "POST", "/v1/sandboxes/nosuch/fork", "A", `{"count":2}`, 404, notFound("sandbox nosuch not found")},
		{"fork other tenant's", "POST", "/v1/sandboxes/{running}/fork", "B", `{"count":2}`, 404, notFound("sandbox {running} not found")},
		{"fork suspended", "POST", "/v1/sandboxes/{suspended}/fork", "A", `{"count":2}`, 409,
			rest.Error{Code: "failed_precondition", Message: "sandbox {suspended} is suspended: only a running sandbox can be snapshotted"}},
		{"fork count too big", "POST", "/v1/sandboxes/{running}/fork", "A", `{"count":65}`, 400, bad("count must be between 1 and 64, got 65")},
		{"fork negative count", "POST", "/v1/sandboxes/{running}/fork", "A", `{"count":-1}`, 400, bad("count must be between 1 and 64, got -1")},
		{"fork kept name taken", "POST", "/v1/sandboxes/{running}/fork", "A", `{"count":1,"snapshot_name":"taken"}`, 409,
			rest.Error{Code: "already_exists", Message: `snapshot name "taken" is taken by snapshot {snap}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := e.keyA
			if tt.key == "B" {
				key = e.keyB
			}
			status, body := e.do(tt.method, ids.Replace(tt.path), key, ids.Replace(tt.body))
			want := tt.want
			want.Message = ids.Replace(want.Message)
			checkAPIError(t, status, body, tt.wantStatus, want)
		})
	}
}

func TestSnapshotUnsupported(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	running := e.create(e.keyA, `{"image":"busybox"}`).ID
	e.node.mu.Lock()
	e.node.noSuspend = true
	e.node.mu.Unlock()
	for _, path := range []string{"/v1/snapshots", "/v1/sandboxes/" + running + "/fork"} {
		status, body := e.do("POST", path, e.keyA, `{"sandbox":"`+running+`"}`)
		if path != "/v1/snapshots" {
			status, body = e.do("POST", path, e.keyA, `{"count":1}`)
		}
		checkAPIError(t, status, body, 501, rest.Error{Code: "unsupported", Message: "runtime stub cannot snapshot sandboxes"})
	}
}
