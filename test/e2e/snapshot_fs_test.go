package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/api/rest"
)

// TestFilesystemSnapshot is the durable-sandbox issue's filesystem mode:
// a snapshot of a running sandbox's files only. A sandbox created from it
// boots cold on the saved disk: the files written are there byte for
// byte, a file deleted from the image stays deleted, and no process of
// the source runs. The source runs on, unaffected; the snapshot outlives
// it; deleting the snapshot frees its layer.
func TestFilesystemSnapshot(t *testing.T) {
	// No automatic warm pool: its spares of a snapshot's shape would
	// hold the snapshot's layer mounted after the snapshot is deleted.
	in := &instance{t: t, bin: denBin(t), dataDir: t.TempDir(), log: &bytes.Buffer{}, upArgs: []string{"--no-base", "--warm-pool", "0"}, upWait: time.Minute}
	in.start()
	t.Cleanup(func() { in.removeAll(); in.stop() })
	src := startCounter(t, in) // a background loop, and /data/f0 written
	src.writeFile(1)
	in.mustDen("exec", src.id, "--", "sh", "-c", "rm /bin/true && test ! -e /bin/true")

	res := in.den(nil, "snapshot", "create", src.id, "--mode", "disk")
	if res.code == 0 || !strings.Contains(res.stderr, `mode must be "memory" or "filesystem", got "disk"`) {
		t.Fatalf("snapshot --mode disk: exit %d, %q; want the mode named", res.code, res.stderr)
	}
	snapID := strings.TrimSpace(in.mustDen("snapshot", "create", src.id, "--mode", "filesystem", "--name", "disk"))
	var snap rest.Snapshot
	if err := json.Unmarshal([]byte(in.mustDen("snapshot", "get", "disk", "--json")), &snap); err != nil {
		t.Fatal(err)
	}
	if snap.ID != snapID || snap.Mode != rest.SnapshotModeFilesystem || snap.Image != testImage || snap.SizeBytes <= 0 ||
		!strings.HasPrefix(snap.FilesystemImage, "sha256:") {
		t.Fatalf("snapshot get = %+v, want a filesystem snapshot of %s with its image", snap, testImage)
	}
	if ls := in.mustDen("snapshot", "ls"); !strings.Contains(ls, "filesystem") {
		t.Fatalf("snapshot ls does not show the mode:\n%s", ls)
	}
	src.waitCounter() // the source runs on, its processes untouched
	src.checkFiles()

	boot := src.follow(strings.TrimSpace(in.mustDen("create", "--snapshot", "disk")))
	boot.checkFiles()
	if res := in.den(nil, "exec", boot.id, "--", "test", "-e", "/bin/true"); res.code == 0 {
		t.Fatal("/bin/true, deleted in the source before the snapshot, is back")
	}
	if ps := in.mustDen("exec", boot.id, "--", "ps", "-o", "args"); strings.Contains(ps, "while true") {
		t.Fatalf("the source's background loop runs in a cold-booted sandbox:\n%s", ps)
	}
	in.mustDen("exec", boot.id, "--", "sh", "-c", "echo mine > /data/mine")
	if res := in.den(nil, "exec", src.id, "--", "cat", "/data/mine"); res.code == 0 {
		t.Fatalf("the source sees a write of the new sandbox: %q", res.stdout)
	}

	// The snapshot outlives its source.
	in.mustDen("rm", src.id, boot.id)
	again := src.follow(strings.TrimSpace(in.mustDen("create", "--snapshot", snapID)))
	again.checkFiles()
	in.mustDen("rm", again.id)

	layer := filepath.Join(in.dataDir, "images", "layers", strings.TrimPrefix(snapshotLayer(t, in, snap.FilesystemImage), "sha256:"))
	if _, err := os.Stat(layer); err != nil {
		t.Fatalf("the snapshot's layer: %v", err)
	}
	in.mustDen("snapshot", "rm", "disk")
	in.mustDen("image", "prune")
	if _, err := os.Stat(layer); !os.IsNotExist(err) {
		t.Fatalf("the layer of a deleted snapshot is still there after a prune: %v", err)
	}
	if res := in.den(nil, "create", "--snapshot", snapID); res.code == 0 {
		t.Fatalf("create from a deleted snapshot: %q", res.stdout)
	}
}

// snapshotLayer is the diff ID of the top layer of image id.
func snapshotLayer(t *testing.T, in *instance, id string) string {
	t.Helper()
	var img rest.ImageDetails
	if err := json.Unmarshal([]byte(in.mustDen("image", "inspect", id)), &img); err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) == 0 {
		t.Fatalf("image %s has no layers", id)
	}
	return img.Layers[len(img.Layers)-1].DiffID
}
