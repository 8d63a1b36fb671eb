package e2e

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/api/rest"
	den "github.com/denhq/den/sdk/go"
)

// startCounter creates a sandbox that runs counterScript and holds a file,
// and waits until the counter moves.
func startCounter(t *testing.T, in *instance) *durable {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	d := &durable{t: t, in: in, ctx: ctx, files: map[string]string{}}
	d.id = strings.TrimSpace(in.mustDen("create", testImage, "--timeout", "3600"))
	in.mustDen("exec", d.id, "--", "mkdir", "-p", "/data")
	go d.sandbox().Exec(ctx, den.ExecOptions{Cmd: "sh", Args: []string{"-c", counterScript}, Tag: "counter"})
	d.waitCounter()
	d.writeFile(0)
	return d
}

// follow is a durable over another sandbox of the same instance.
func (d *durable) follow(id string) *durable {
	return &durable{t: d.t, in: d.in, ctx: d.ctx, id: id, files: d.files}
}

// TestForkAndSnapshots is the durable-sandbox issue's second item: a
// snapshot of a running sandbox outlives it, a sandbox created from the
// snapshot continues its processes and has its files, and a fork makes
// running copies whose writes are their own.
func TestForkAndSnapshots(t *testing.T) {
	in := startDen(t, "")
	src := startCounter(t, in)

	snapID := strings.TrimSpace(in.mustDen("snapshot", "create", src.id, "--name", "counter"))
	counted := src.counter
	var got rest.Snapshot
	if err := json.Unmarshal([]byte(in.mustDen("snapshot", "get", "counter", "--json")), &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != snapID || got.Sandbox != src.id || got.Image != testImage || got.SizeBytes <= 0 {
		t.Fatalf("snapshot get = %+v, want ID %s of sandbox %s with a size", got, snapID, src.id)
	}
	if ls := in.mustDen("snapshot", "ls"); !strings.Contains(ls, snapID) {
		t.Fatalf("snapshot ls does not list %s:\n%s", snapID, ls)
	}
	src.waitCounter() // the source runs on
	in.mustDen("rm", src.id)

	clone := src.follow(strings.TrimSpace(in.mustDen("create", "--snapshot", "counter")))
	clone.counter = 0
	clone.waitCounter()
	if clone.counter < counted {
		t.Fatalf("the clone's counter is %d, below the %d counted before the snapshot: its process restarted", clone.counter, counted)
	}
	clone.checkFiles()

	start := time.Now()
	out := in.mustDen("fork", clone.id, "--count", "10", "--json")
	t.Logf("den fork --count 10: %v", time.Since(start))
	var copies []rest.Sandbox
	if err := json.Unmarshal([]byte(out), &copies); err != nil {
		t.Fatalf("fork --json: %v\n%s", err, out)
	}
	if len(copies) != 10 {
		t.Fatalf("fork made %d copies, want 10", len(copies))
	}
	seen := map[string]bool{clone.id: true}
	for _, c := range copies {
		if c.State != rest.StateRunning || seen[c.ID] {
			t.Fatalf("copy %s: state %s (or a duplicate ID)", c.ID, c.State)
		}
		seen[c.ID] = true
	}
	if ls := in.mustDen("snapshot", "ls", "--json"); strings.Count(ls, `"id"`) != 1 {
		t.Fatalf("the fork's checkpoint was kept:\n%s", ls)
	}
	first := clone.follow(copies[0].ID)
	first.counter = clone.counter
	first.waitCounter()
	first.checkFiles()
	in.mustDen("exec", first.id, "--", "sh", "-c", "echo mine > /data/mine")
	for _, id := range append([]string{clone.id}, jsonIDsOf(copies[1:])...) {
		res := in.den(nil, "exec", id, "--", "cat", "/data/mine")
		if res.code == 0 {
			t.Fatalf("sandbox %s sees the write of copy %s: %q", id, first.id, res.stdout)
		}
		n, err := strconv.Atoi(strings.TrimSpace(in.mustDen("exec", id, "--", "cat", "/tmp/count")))
		if err != nil || n < counted {
			t.Fatalf("sandbox %s: counter %d (%v), want at least %d", id, n, err, counted)
		}
	}
	in.mustDen("snapshot", "rm", snapID)
	if res := in.den(nil, "snapshot", "get", snapID); res.code == 0 {
		t.Fatalf("snapshot %s is still there after rm", snapID)
	}
}

func jsonIDsOf(list []rest.Sandbox) []string {
	ids := make([]string, 0, len(list))
	for _, sb := range list {
		ids = append(ids, sb.ID)
	}
	return ids
}
