package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/sdk/go/dentest"
)

func TestSnapshotAndForkCommands(t *testing.T) {
	isolate(t)
	srv := dentest.NewServer(dentest.Config{APIKey: testKey})
	t.Cleanup(srv.Close)
	must := func(args ...string) string {
		t.Helper()
		r := cli(t, srv.URL, "", args...)
		if r.code != 0 {
			t.Fatalf("den %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
		}
		return r.stdout
	}
	src := strings.TrimSpace(must("create"))
	snap := strings.TrimSpace(must("snapshot", "create", src, "--name", "base"))
	if !strings.HasPrefix(snap, "snap-") {
		t.Fatalf("snapshot create printed %q", snap)
	}
	if ls := must("snapshot", "ls"); !strings.Contains(ls, snap) || !strings.Contains(ls, "base") || !strings.HasPrefix(ls, "ID") {
		t.Fatalf("snapshot ls:\n%s", ls)
	}
	var got rest.Snapshot
	if err := json.Unmarshal([]byte(must("snapshot", "get", "base", "--json")), &got); err != nil || got.ID != snap {
		t.Fatalf("snapshot get --json: %+v, %v", got, err)
	}
	clone := strings.TrimSpace(must("create", "--snapshot", "base"))
	if clone == "" || clone == src {
		t.Fatalf("create --snapshot printed %q", clone)
	}
	if ids := strings.Fields(must("fork", clone, "--count", "3")); len(ids) != 3 {
		t.Fatalf("fork --count 3 printed %v", ids)
	}
	var copies []rest.Sandbox
	if err := json.Unmarshal([]byte(must("fork", clone, "--json")), &copies); err != nil || len(copies) != 1 {
		t.Fatalf("fork --json: %v, %v", copies, err)
	}
	if r := cli(t, srv.URL, "", "fork", clone, "--count", "65"); r.code == 0 || !strings.Contains(r.stderr, "count must be between 1 and 64, got 65") {
		t.Fatalf("fork --count 65: exit %d, stderr %q", r.code, r.stderr)
	}
	must("snapshot", "rm", "base")
	if r := cli(t, srv.URL, "", "snapshot", "get", snap); r.code == 0 || !strings.Contains(r.stderr, "snapshot "+snap+" not found") {
		t.Fatalf("snapshot get after rm: exit %d, stderr %q", r.code, r.stderr)
	}
}
