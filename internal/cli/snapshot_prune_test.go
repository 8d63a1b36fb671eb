package cli

import (
	"bytes"
	"context"
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

// snapshotStorageServer answers the usage and prune routes with canned
// bodies and records the prune requests.
type snapshotStorageServer struct {
	mu    sync.Mutex
	reqs  []string // prune request bodies
	usage rest.SnapshotUsage
	prune rest.PruneSnapshotsResult
}

func (s *snapshotStorageServer) handler(t *testing.T) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/snapshots/usage", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-API-Key") != testKey {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_ = json.NewEncoder(w).Encode(s.usage)
	})
	mux.HandleFunc("POST /v1/snapshots/prune", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, string(body))
		s.mu.Unlock()
		if strings.Contains(string(body), "include_named") {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(rest.Error{Code: "invalid_argument", Message: "no named ones today"})
			return
		}
		res := s.prune
		res.DryRun = strings.Contains(string(body), `"dry_run":true`)
		_ = json.NewEncoder(w).Encode(res)
	})
	return mux
}

func TestSnapshotUsageAndPruneCommands(t *testing.T) {
	isolate(t)
	now := time.Now()
	fake := &snapshotStorageServer{
		usage: rest.SnapshotUsage{Node: "node-1", TenantBytes: 3 << 20, NodeBytes: 10 << 20, NodeFiles: 12, OrphanBytes: 1 << 20,
			Sandboxes: []rest.SandboxSnapshotUsage{{ID: "sb-1", State: rest.StateSuspended, PinnedGeneration: 2, Generations: 2, Pending: 1, Bytes: 2 << 20}},
			Objects:   []rest.SnapshotObjectUsage{{ID: "snap-1", Name: "base", Bytes: 1 << 20, CreatedAt: now.Add(-time.Hour)}}},
		prune: rest.PruneSnapshotsResult{Bytes: 1 << 20, Removed: []rest.PrunedSnapshot{
			{Kind: rest.SnapshotKindGeneration, Sandbox: "sb-1", Generation: 1, Bytes: 1 << 20, Reason: "older generation"}}},
	}
	srv := httptest.NewServer(fake.handler(t))
	t.Cleanup(srv.Close)

	r := cli(t, srv.URL, "", "snapshot", "usage")
	if r.code != 0 {
		t.Fatalf("snapshot usage: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, want := range []string{"SANDBOX", "sb-1", "suspended", "snap-1", "base",
		"yours: 3.0MiB in 1 sandboxes and 1 snapshots", "node node-1: 10.0MiB in 12 files, 1.0MiB of it named by no record"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("snapshot usage lacks %q:\n%s", want, r.stdout)
		}
	}
	r = cli(t, srv.URL, "", "snapshot", "usage", "--json")
	var u rest.SnapshotUsage
	if err := json.Unmarshal([]byte(r.stdout), &u); err != nil || u.NodeBytes != 10<<20 {
		t.Fatalf("snapshot usage --json: %+v, %v", u, err)
	}

	r = cli(t, srv.URL, "", "snapshot", "prune", "--dry-run")
	if r.code != 0 || r.stdout != "would remove sandbox sb-1 generation 1 (generation, 1.0MiB): older generation\nwould free 1.0MiB in 1 directories\n" {
		t.Fatalf("snapshot prune --dry-run: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = cli(t, srv.URL, "", "snapshot", "prune", "--objects", "--older-than", "24h")
	if r.code != 0 || !strings.HasSuffix(r.stdout, "freed 1.0MiB in 1 directories\n") {
		t.Fatalf("snapshot prune --objects: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = cli(t, srv.URL, "", "snapshot", "prune", "--objects", "--older-than", "0s", "--include-named")
	if r.code != 1 || r.stderr != "den: no named ones today (invalid_argument)\n" {
		t.Fatalf("snapshot prune refused: exit %d, stderr %q", r.code, r.stderr)
	}
	wantReqs := []string{`{"dry_run":true}`, `{"objects":true,"older_than_sec":86400}`, `{"objects":true,"older_than_sec":0,"include_named":true}`}
	fake.mu.Lock()
	got := fake.reqs
	fake.mu.Unlock()
	if d := cmp.Diff(wantReqs, got); d != "" {
		t.Fatalf("prune requests (-want +got):\n%s", d)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--objects"}, "--objects needs --older-than (e.g. 24h, or 0s for all): snapshot objects are your data"},
		{[]string{"--older-than", "1h"}, "--older-than and --include-named apply to snapshot objects: add --objects"},
		{[]string{"--objects", "--older-than", "-1h"}, "--older-than must be >= 0, got -1h0m0s"},
	} {
		r := cli(t, srv.URL, "", append([]string{"snapshot", "prune"}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("prune %v: exit %d, stderr %q, want %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

func TestBenchFork(t *testing.T) {
	srv := newEnv(t)
	var gotDirty, gotN int
	a := &app{checkpointFloor: func(_ context.Context, _, _, _, _ string, dirtyMB, n int) ([]time.Duration, []time.Duration, error) {
		gotDirty, gotN = dirtyMB, n
		var ckpt, restore []time.Duration
		for range n {
			ckpt, restore = append(ckpt, 10*time.Millisecond), append(restore, 100*time.Millisecond)
		}
		return ckpt, restore, nil
	}}
	root := newRoot(a)
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs([]string{"--url", srv.URL, "--api-key", testKey, "bench", "fork", "--image", "base", "-n", "2",
		"--count", "3", "--runsc", "/opt/runsc", "--rootfs", t.TempDir(), "--json", "-"})
	if code := Execute(root); code != 0 {
		t.Fatalf("exit %d, stderr %q, stdout %q", code, errb.String(), out.String())
	}
	if gotDirty != 0 || gotN != 3 {
		t.Errorf("floor called with dirty=%d n=%d, want 0, 3", gotDirty, gotN)
	}
	text := out.String()
	for _, want := range []string{"den fork --count 3 ", "2/2", "den fork --count 3 + first command in all", "raw runsc restore + exec (each)",
		"raw fork: 1 checkpoint + 3 restores", "310.0", `"raw_fork_sequential_ms": 310`} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if r := cli(t, srv.URL, "", "bench", "fork", "--count", "65"); r.code != 2 || !strings.Contains(r.stderr, "--count must be between 1 and 64, got 65") {
		t.Errorf("bench fork --count 65: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := cli(t, srv.URL, "", "bench", "fork", "--dirty-in", "disk"); r.code != 2 || !strings.Contains(r.stderr, `--dirty-in: dirty memory in "disk": want heap or tmpfs`) {
		t.Errorf("bench fork --dirty-in disk: exit %d, stderr %q", r.code, r.stderr)
	}
}
