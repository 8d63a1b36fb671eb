package server

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/node"
	"github.com/denhq/den/internal/snapshot"
)

// The real node provides what the routes need.
var _ snapshotStorage = (*node.Node)(nil)

// storageNode is the stub node with a made-up snapshot directory: usage
// answers entries, prune records its options and answers report.
type storageNode struct {
	*stubNode
	entries []snapshot.Entry
	report  node.PruneReport

	mu   sync.Mutex
	opts []node.PruneOptions
}

func (n *storageNode) SnapshotUsage(ctx context.Context) (snapshot.Usage, error) {
	u := snapshot.Usage{Entries: n.entries, ByKind: map[string]snapshot.Total{}}
	for _, e := range n.entries {
		t := u.ByKind[e.Kind]
		t.Entries, t.Bytes, t.Files = t.Entries+1, t.Bytes+e.Bytes, t.Files+e.Files
		u.ByKind[e.Kind] = t
		u.Bytes, u.Files = u.Bytes+e.Bytes, u.Files+e.Files
	}
	return u, nil
}

func (n *storageNode) PruneSnapshots(ctx context.Context, opts node.PruneOptions) (node.PruneReport, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.opts = append(n.opts, opts)
	return n.report, nil
}

func (n *storageNode) lastOpts() node.PruneOptions {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.opts[len(n.opts)-1]
}

func newStorageEnv(t *testing.T) (*testEnv, *storageNode) {
	t.Helper()
	var sn *storageNode
	e := newTestEnv(t, func(c *Config) {
		sn = &storageNode{stubNode: c.Node.(*stubNode)}
		c.Node = sn
	})
	return e, sn
}

func TestSnapshotUsage(t *testing.T) {
	t.Parallel()
	e, sn := newStorageEnv(t)
	a := e.create(e.keyA, `{"image":"busybox","name":"web"}`)
	b := e.create(e.keyB, `{"image":"busybox"}`)
	e.doJSON("POST", "/v1/sandboxes/"+a.ID+"/suspend", e.keyA, "", http.StatusOK, nil)
	var snapA, snapB rest.Snapshot
	e.doJSON("POST", "/v1/snapshots", e.keyB, `{"sandbox":"`+b.ID+`"}`, http.StatusCreated, &snapB)
	e.doJSON("POST", "/v1/sandboxes/"+a.ID+"/resume", e.keyA, "", http.StatusOK, nil)
	e.doJSON("POST", "/v1/snapshots", e.keyA, `{"sandbox":"`+a.ID+`","name":"base"}`, http.StatusCreated, &snapA)
	sn.entries = []snapshot.Entry{
		{Kind: snapshot.KindObject, Owner: snapA.ID, Generation: 1, Bytes: 50, Files: 2},
		{Kind: snapshot.KindObject, Owner: snapB.ID, Generation: 1, Bytes: 500, Files: 2},
		{Kind: snapshot.KindObjectPending, Owner: "snap-gone", Generation: 1, Bytes: 7, Files: 1},
		{Kind: snapshot.KindGeneration, Owner: a.ID, Generation: 1, Bytes: 100, Files: 3},
		{Kind: snapshot.KindPending, Owner: a.ID, Generation: 2, Bytes: 10, Files: 1},
		{Kind: snapshot.KindGeneration, Owner: b.ID, Generation: 1, Bytes: 1000, Files: 3},
		{Kind: snapshot.KindGeneration, Owner: "gone", Generation: 4, Bytes: 3, Files: 1},
		{Kind: snapshot.KindOther, Owner: a.ID, Bytes: 1, Files: 1}, // in a recorded sandbox's dir: not an orphan
		{Kind: snapshot.KindOther, Bytes: 2, Files: 1},
	}

	var got rest.SnapshotUsage
	e.doJSON("GET", "/v1/snapshots/usage", e.keyA, "", http.StatusOK, &got)
	want := rest.SnapshotUsage{
		Node:        nodeID,
		Sandboxes:   []rest.SandboxSnapshotUsage{{ID: a.ID, Name: "web", State: rest.StateRunning, PinnedGeneration: 1, Generations: 1, Pending: 1, Bytes: 110, Files: 4}},
		Objects:     []rest.SnapshotObjectUsage{{ID: snapA.ID, Name: "base", Bytes: 50, Files: 2, CreatedAt: snapA.CreatedAt}},
		TenantBytes: 160, NodeBytes: 1673, NodeFiles: 15, OrphanBytes: 12,
		ByKind: map[string]rest.SnapshotUsageTotal{
			snapshot.KindObject: {Dirs: 2, Bytes: 550, Files: 4}, snapshot.KindObjectPending: {Dirs: 1, Bytes: 7, Files: 1},
			snapshot.KindGeneration: {Dirs: 3, Bytes: 1103, Files: 7}, snapshot.KindPending: {Dirs: 1, Bytes: 10, Files: 1},
			snapshot.KindOther: {Dirs: 2, Bytes: 3, Files: 2},
		},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("usage of tenant A (-want +got):\n%s", d)
	}
	e.doJSON("GET", "/v1/snapshots/usage", e.keyB, "", http.StatusOK, &got)
	if len(got.Sandboxes) != 1 || got.Sandboxes[0].ID != b.ID || len(got.Objects) != 1 || got.Objects[0].ID != snapB.ID ||
		got.TenantBytes != 1500 || got.NodeBytes != 1673 {
		t.Fatalf("usage of tenant B: %+v", got)
	}
	// "usage" is not read as a snapshot named usage.
	e.doJSON("GET", "/v1/snapshots/usage", "", "", http.StatusUnauthorized, nil)
}

func TestPruneSnapshots(t *testing.T) {
	t.Parallel()
	e, sn := newStorageEnv(t)
	admin := e.addAdminKey()
	a := e.create(e.keyA, `{"image":"busybox"}`)
	b := e.create(e.keyB, `{"image":"busybox"}`)
	var old, oldNamed, newer, other rest.Snapshot
	e.doJSON("POST", "/v1/snapshots", e.keyA, `{"sandbox":"`+a.ID+`"}`, http.StatusCreated, &old)
	e.doJSON("POST", "/v1/snapshots", e.keyA, `{"sandbox":"`+a.ID+`","name":"keep"}`, http.StatusCreated, &oldNamed)
	e.doJSON("POST", "/v1/snapshots", e.keyB, `{"sandbox":"`+b.ID+`"}`, http.StatusCreated, &other)
	e.clock.Advance(2 * time.Hour)
	e.doJSON("POST", "/v1/snapshots", e.keyA, `{"sandbox":"`+a.ID+`"}`, http.StatusCreated, &newer)
	sn.report = node.PruneReport{Items: []node.PruneItem{
		{Entry: snapshot.Entry{Kind: snapshot.KindGeneration, Owner: a.ID, Generation: 1, Bytes: 100, Files: 2}, Reason: node.ReasonOlderGeneration},
		{Entry: snapshot.Entry{Kind: snapshot.KindObjectPending, Owner: "snap-x", Generation: 1, Bytes: 5, Files: 1}, Reason: node.ReasonNoObject},
	}, Bytes: 105, Files: 3}
	leftovers := []rest.PrunedSnapshot{
		{Kind: snapshot.KindGeneration, Sandbox: a.ID, Generation: 1, Bytes: 100, Files: 2, Reason: node.ReasonOlderGeneration},
		{Kind: snapshot.KindObjectPending, Snapshot: "snap-x", Generation: 1, Bytes: 5, Files: 1, Reason: node.ReasonNoObject},
	}

	// A tenant's key prunes its own sandboxes; an admin's the whole node.
	var res rest.PruneSnapshotsResult
	e.doJSON("POST", "/v1/snapshots/prune", e.keyA, "", http.StatusOK, &res)
	if d := cmp.Diff(rest.PruneSnapshotsResult{Removed: leftovers, Bytes: 105}, res); d != "" {
		t.Fatalf("prune (-want +got):\n%s", d)
	}
	if got := sn.lastOpts(); got != (node.PruneOptions{Tenant: tenantA}) {
		t.Fatalf("tenant prune options %+v", got)
	}
	e.doJSON("POST", "/v1/snapshots/prune", admin, `{"dry_run":true}`, http.StatusOK, &res)
	if got := sn.lastOpts(); got != (node.PruneOptions{DryRun: true, Orphans: true}) || !res.DryRun {
		t.Fatalf("admin dry run: options %+v, result %+v", got, res)
	}

	// Snapshot objects go only when asked for, by age, unnamed unless
	// named ones are asked for too; a dry run deletes none.
	ids := func(res rest.PruneSnapshotsResult) []string {
		var out []string
		for _, p := range res.Removed {
			if p.Kind == rest.SnapshotKindObject {
				out = append(out, p.Snapshot)
			}
		}
		slices.Sort(out)
		return out
	}
	e.doJSON("POST", "/v1/snapshots/prune", e.keyA, `{"objects":true,"older_than_sec":3600,"dry_run":true}`, http.StatusOK, &res)
	if got := ids(res); !slices.Equal(got, []string{old.ID}) || res.Bytes != 105+4096 {
		t.Fatalf("dry run of objects: %v, %d bytes", got, res.Bytes)
	}
	e.doJSON("GET", "/v1/snapshots/"+old.ID, e.keyA, "", http.StatusOK, nil)
	e.doJSON("POST", "/v1/snapshots/prune", e.keyA, `{"objects":true,"older_than_sec":3600,"include_named":true}`, http.StatusOK, &res)
	want := []string{old.ID, oldNamed.ID}
	slices.Sort(want)
	if got := ids(res); !slices.Equal(got, want) {
		t.Fatalf("pruned objects %v, want %v", got, want)
	}
	var list rest.SnapshotList
	e.doJSON("GET", "/v1/snapshots", e.keyA, "", http.StatusOK, &list)
	if len(list.Snapshots) != 1 || list.Snapshots[0].ID != newer.ID {
		t.Fatalf("tenant A's snapshots after prune: %+v", list.Snapshots)
	}
	e.doJSON("GET", "/v1/snapshots/"+other.ID, e.keyB, "", http.StatusOK, nil) // another tenant's stays
}

func TestPruneSnapshotsErrors(t *testing.T) {
	t.Parallel()
	e, _ := newStorageEnv(t)
	for _, tc := range []struct {
		name, body string
		status     int
		want       rest.Error
	}{
		{"objects without age", `{"objects":true}`, http.StatusBadRequest, rest.Error{Code: "invalid_argument",
			Message: "objects requires older_than_sec: snapshot objects are user data, say how old they must be (0 for all)"}},
		{"age without objects", `{"older_than_sec":60}`, http.StatusBadRequest, rest.Error{Code: "invalid_argument",
			Message: "older_than_sec and include_named apply to snapshot objects: set objects too"}},
		{"negative age", `{"objects":true,"older_than_sec":-1}`, http.StatusBadRequest, rest.Error{Code: "invalid_argument",
			Message: "older_than_sec must be >= 0, got -1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.do("POST", "/v1/snapshots/prune", e.keyA, tc.body)
			checkAPIError(t, status, body, tc.status, tc.want)
		})
	}
	// A node that keeps no snapshots answers 501.
	plain := newTestEnv(t)
	status, body := plain.do("GET", "/v1/snapshots/usage", plain.keyA, "")
	checkAPIError(t, status, body, http.StatusNotImplemented, rest.Error{Code: "unsupported", Message: "node node-1 keeps no snapshots: none of its runtimes (stub) can"})
	status, body = plain.do("POST", "/v1/snapshots/prune", plain.keyA, "")
	checkAPIError(t, status, body, http.StatusNotImplemented, rest.Error{Code: "unsupported", Message: "node node-1 keeps no snapshots: none of its runtimes (stub) can"})
}
