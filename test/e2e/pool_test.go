package e2e

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/api/rest"
)

// startDenNoImplicitPool is startDen with the implicit warm pool off, so
// that every spare comes from a declared pool.
func startDenNoImplicitPool(t *testing.T) *instance {
	t.Helper()
	in := &instance{t: t, bin: denBin(t), dataDir: t.TempDir(), log: &bytes.Buffer{}, upArgs: []string{"--no-base", "--warm-pool", "0"}, upWait: time.Minute}
	in.start()
	t.Cleanup(func() { in.removeAll(); in.stop() })
	return in
}

// getPool reads a pool with `den pool get --json`.
func (in *instance) getPool(idOrName string) rest.Pool {
	in.t.Helper()
	var p rest.Pool
	if err := json.Unmarshal([]byte(in.mustDen("pool", "get", idOrName, "--json")), &p); err != nil {
		in.t.Fatal(err)
	}
	return p
}

// waitPoolFull waits until the pool has every spare ready.
func (in *instance) waitPoolFull(idOrName string) rest.Pool {
	in.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		p := in.getPool(idOrName)
		if p.Ready == p.Size {
			return p
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("pool %s has %d/%d spares ready after 2m (waiting: %q)\nden log:\n%s", idOrName, p.Ready, p.Size, p.Waiting, tail(in.log.String(), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// uptime is the sandbox's /proc/uptime in seconds: how long ago its
// kernel (a spare's, for a claimed sandbox) booted.
func (in *instance) uptime(id string) float64 {
	in.t.Helper()
	out := in.mustDen("exec", id, "--", "cat", "/proc/uptime")
	f, err := strconv.ParseFloat(strings.Fields(out)[0], 64)
	if err != nil {
		in.t.Fatalf("uptime of %s: %q", id, out)
	}
	return f
}

// sparesOnDisk counts the spare directories of the instance's driver.
func (in *instance) sparesOnDisk() int {
	matches, _ := filepath.Glob(filepath.Join(in.dataDir, "sandboxes", "spares", "*", "spare-*"))
	return len(matches)
}

// TestWarmPool is the durable-sandbox issue's fifth item: `den pool
// create` keeps N never-used sandboxes ready; a create with the pool's
// image and size (or naming the pool) claims one, which looks new (empty
// /tmp, its own boot ID, hostname and env); the pool refills; a snapshot
// pool hands out running copies of the snapshot; deleting a pool destroys
// its spares; the node's memory bounds the pools.
func TestWarmPool(t *testing.T) {
	in := startDenNoImplicitPool(t)

	var pool rest.Pool
	if err := json.Unmarshal([]byte(in.mustDen("pool", "create", "--image", testImage, "--size", "2", "--name", "web", "--wait", "2m", "--json")), &pool); err != nil {
		t.Fatal(err)
	}
	if pool.Ready != 2 || pool.Size != 2 || pool.Image != testImage {
		t.Fatalf("pool create --wait = %+v, want 2/2 ready", pool)
	}
	if ls := in.mustDen("pool", "ls"); !strings.Contains(ls, pool.ID) || !strings.Contains(ls, "2/2") {
		t.Fatalf("pool ls:\n%s", ls)
	}
	// Spares age while they wait; a claimed sandbox's kernel is as old
	// as its spare, a cold one's is fresh. That tells them apart below.
	const aged = 3.0
	time.Sleep(time.Duration(aged * float64(time.Second)))

	byShape := strings.TrimSpace(in.mustDen("create", testImage, "--env", "GREETING=hello"))
	byName := strings.TrimSpace(in.mustDen("create", "--pool", "web", "--env", "GREETING=bonjour", "--name", "named"))
	bootIDs := map[string]string{}
	for id, greeting := range map[string]string{byShape: "hello", byName: "bonjour"} {
		if up := in.uptime(id); up < aged {
			t.Fatalf("sandbox %s booted %.2fs ago, less than the %.0fs its spare waited: it was not claimed from the pool", id, up, aged)
		}
		if out := in.mustDen("exec", id, "--", "sh", "-c", `echo "$GREETING"; ls -A /tmp | grep -vx .den-tmp-on-rootfs | wc -l`); out != greeting+"\n0\n" {
			t.Fatalf("sandbox %s: env and the count of files in /tmp = %q, want %q and an empty /tmp (but for the driver's marker)", id, out, greeting)
		}
		wantHost := id
		if id == byName {
			wantHost = "named"
		}
		if host := strings.TrimSpace(in.mustDen("exec", id, "--", "hostname")); host != wantHost {
			t.Fatalf("sandbox %s: hostname %q, want %q", id, host, wantHost)
		}
		bootIDs[id] = strings.TrimSpace(in.mustDen("exec", id, "--", "cat", "/proc/sys/kernel/random/boot_id"))
	}
	if bootIDs[byShape] == "" || bootIDs[byShape] == bootIDs[byName] {
		t.Fatalf("claimed sandboxes share a boot ID: %v", bootIDs)
	}
	in.mustDen("exec", byShape, "--", "touch", "/tmp/mine")
	if out := in.mustDen("exec", byName, "--", "ls", "/tmp"); out != "" {
		t.Fatalf("a write in one claimed sandbox shows in the other: /tmp holds %q", out)
	}
	// Another shape boots cold.
	cold := strings.TrimSpace(in.mustDen("create", testImage, "--memory", "256"))
	if up := in.uptime(cold); up >= aged {
		t.Fatalf("a sandbox of another shape booted %.2fs ago: it came from the pool", up)
	}
	// The pool refills in the background.
	in.waitPoolFull("web")

	// A snapshot pool hands out running copies of its snapshot.
	src := startCounter(t, in)
	snapID := strings.TrimSpace(in.mustDen("snapshot", "create", src.id, "--name", "counting"))
	counted := src.counter
	spID := strings.TrimSpace(in.mustDen("pool", "create", "--snapshot", "counting", "--size", "1"))
	sp := in.waitPoolFull(spID)
	if sp.Snapshot != snapID {
		t.Fatalf("snapshot pool = %+v, want snapshot %s", sp, snapID)
	}
	time.Sleep(time.Duration(aged * float64(time.Second)))
	copyID := strings.TrimSpace(in.mustDen("create", "--pool", spID))
	if up := in.uptime(copyID); up < aged {
		t.Fatalf("copy %s booted %.2fs ago: it was not claimed from the snapshot pool", copyID, up)
	}
	cp := src.follow(copyID)
	cp.counter = 0
	cp.waitCounter()
	if cp.counter < counted {
		t.Fatalf("the copy's counter is %d, below the %d counted before the snapshot: its process restarted", cp.counter, counted)
	}
	if host := strings.TrimSpace(in.mustDen("exec", copyID, "--", "hostname")); host != copyID {
		t.Fatalf("copy hostname %q, want %q", host, copyID)
	}
	if res := in.den(nil, "snapshot", "rm", "counting"); res.code == 0 || !strings.Contains(res.stderr, "used by pool "+spID) {
		t.Fatalf("snapshot rm of a pooled snapshot: exit %d, stderr %q; want a refusal naming the pool", res.code, res.stderr)
	}

	// A pool of a filesystem snapshot keeps cold-booted sandboxes of its
	// files ready.
	in.mustDen("exec", src.id, "--", "sh", "-c", "echo kept > /data/fs-pool")
	fsID := strings.TrimSpace(in.mustDen("snapshot", "create", src.id, "--mode", "filesystem", "--name", "files"))
	fpID := strings.TrimSpace(in.mustDen("pool", "create", "--snapshot", "files", "--size", "1"))
	if fp := in.waitPoolFull(fpID); fp.Snapshot != fsID {
		t.Fatalf("filesystem snapshot pool = %+v, want snapshot %s", fp, fsID)
	}
	time.Sleep(time.Duration(aged * float64(time.Second)))
	fromFiles := strings.TrimSpace(in.mustDen("create", "--snapshot", "files"))
	if up := in.uptime(fromFiles); up < aged {
		t.Fatalf("sandbox %s of the filesystem snapshot booted %.2fs ago: it was not claimed from its pool", fromFiles, up)
	}
	if out := in.mustDen("exec", fromFiles, "--", "cat", "/data/fs-pool"); out != "kept\n" {
		t.Fatalf("file of the filesystem snapshot in a pooled sandbox: %q", out)
	}

	// The node's memory bounds the pools.
	if res := in.den(nil, "pool", "create", "--image", testImage, "--size", "256", "--memory", "65536"); res.code == 0 || !strings.Contains(res.stderr, "MiB the node has for them") {
		t.Fatalf("an oversized pool: exit %d, stderr %q", res.code, res.stderr)
	}

	// Deleting the pools destroys their spares; claimed sandboxes live on.
	in.mustDen("pool", "rm", "web", spID, fpID)
	deadline := time.Now().Add(time.Minute)
	for in.sparesOnDisk() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d spares left on disk a minute after their pools were deleted", in.sparesOnDisk())
		}
		time.Sleep(100 * time.Millisecond)
	}
	in.mustDen("exec", byShape, "--", "true")
	in.mustDen("snapshot", "rm", "counting")
}
