package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/fake"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/snapshot"
	"github.com/denhq/den/internal/store"
	"github.com/denhq/den/internal/testenv"
)

// exportingDriver is the fake with a FilesystemExporter whose export is
// the test's function (the fake has no root filesystem to export).
type exportingDriver struct {
	*fake.Driver
	export func(id, dir string) error
}

func (d exportingDriver) ExportFilesystem(ctx context.Context, id, dir string) error {
	return d.export(id, dir)
}

// fsEnv is a node on an exporting fake and a real image store holding
// image "base" (files /etc/gone and /keep).
type fsEnv struct {
	*env
	images *image.Store
	base   *image.Image
	export func(id, dir string) error
}

func newFSEnv(t *testing.T) *fsEnv {
	testenv.RequireRoot(t) // whiteouts are device nodes
	e := &fsEnv{env: newEnv(t)}
	imgs, err := image.Open(filepath.Join(t.TempDir(), "images"), nil)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for name, data := range map[string]string{"etc/gone": "old", "keep": "kept"} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(root, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.base, err = imgs.ImportDir(context.Background(), root, "base", image.Config{Env: []string{"A=1"}})
	if err != nil {
		t.Fatal(err)
	}
	e.images = imgs
	e.export = writeTestExport
	e.node.Close()
	drv := exportingDriver{Driver: e.drv, export: func(id, dir string) error { return e.export(id, dir) }}
	n, err := New(Config{ID: "n1", Driver: drv, Images: imgs, Store: e.st, SnapshotDir: e.snaps, Now: e.clock.Now, Layers: imgs})
	if err != nil {
		t.Fatal(err)
	}
	e.node = n
	t.Cleanup(func() { n.Close() })
	e.record("src", rest.StateStarting, "base")
	if _, err := n.Start(context.Background(), "src"); err != nil {
		t.Fatal(err)
	}
	return e
}

// writeTestExport writes /data/f and deletes /etc/gone, in upper format.
func writeTestExport(id, dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "data/f"), []byte("new"), 0o644); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(dir, "etc"), 0o755); err != nil {
		return err
	}
	return unix.Mknod(filepath.Join(dir, "etc/gone"), unix.S_IFCHR, 0)
}

func (e *fsEnv) snapshotFS(snapID string) (*store.SandboxSnapshot, error) {
	return e.node.CreateSnapshot(context.Background(), &store.SandboxSnapshot{ID: snapID, Tenant: "t", Sandbox: "src", Mode: store.SnapshotModeFilesystem})
}

func TestFilesystemSnapshot(t *testing.T) {
	e := newFSEnv(t)
	ctx := context.Background()
	rec, err := e.snapshotFS("snap-fs")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Mode != store.SnapshotModeFilesystem || rec.Image != "base" || rec.Size <= 0 || !strings.HasPrefix(rec.Digest, "sha256:") ||
		rec.MemoryMB != 64 || rec.Node != "n1" {
		t.Fatalf("snapshot record: %+v", rec)
	}
	if got, err := e.st.Snapshot().SandboxSnapshot("snap-fs"); err != nil || got.FilesystemImage != rec.FilesystemImage {
		t.Fatalf("stored record: %+v, %v", got, err)
	}
	img, err := e.images.Get(rec.FilesystemImage)
	if err != nil {
		t.Fatal(err)
	}
	if img.Name != "" || len(img.Layers) != 2 || img.Layers[0] != e.base.Layers[0] || img.Layers[1] != rec.FilesystemLayer ||
		img.Config.Labels[SnapshotLabel] != "snap-fs" || img.Config.Env[0] != "A=1" || img.Digest != rec.Digest {
		t.Fatalf("snapshot image: %+v", img)
	}
	layer, err := e.images.LayerDir(rec.FilesystemLayer)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(layer, "data/f")); err != nil || string(b) != "new" {
		t.Fatalf("layer data/f = %q, %v", b, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(layer, "etc/gone"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
		t.Fatalf("layer etc/gone is no whiteout: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.snaps, snapshot.ObjectsDir, "snap-fs")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the export is left behind: %v", err)
	}
	if sb := e.get("src"); sb.State != rest.StateRunning {
		t.Fatalf("source is %s, want running", sb.State)
	}
	e.checkGuest("src")
	if _, err := e.node.StartClones(ctx, "snap-fs", nil); errdefs.KindOf(err) != errdefs.FailedPrecondition {
		t.Fatalf("clone from a filesystem snapshot: %v, want FailedPrecondition", err)
	}

	// A sandbox booted on the snapshot's image keeps it past the
	// snapshot's delete: its suspend, resume and recovery resolve it.
	e.record("boot", rest.StateStarting, rec.FilesystemImage)
	if _, err := e.node.Start(ctx, "boot"); err != nil {
		t.Fatal(err)
	}
	if err := e.node.DeleteSnapshot(ctx, "snap-fs"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.images.Get(rec.FilesystemImage); err != nil {
		t.Fatalf("the image of a deleted snapshot that a sandbox boots on: %v", err)
	}
	if err := e.node.Destroy(ctx, "boot"); err != nil {
		t.Fatal(err)
	}
	if err := e.node.pruneSnapshotImages(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.images.Get(rec.FilesystemImage); !errdefs.IsNotFound(err) {
		t.Fatalf("the image of a deleted snapshot: %v", err)
	}
	if _, err := e.images.LayerDir(rec.FilesystemLayer); !errdefs.IsNotFound(err) {
		t.Fatalf("the layer of a deleted snapshot: %v", err)
	}
	if _, err := e.images.Get("base"); err != nil {
		t.Fatalf("the base image after the snapshot's delete: %v", err)
	}
}

// TestFilesystemSnapshotFailureLeavesNothing: a failed export records
// nothing and leaves no files, image or layer.
func TestFilesystemSnapshotFailureLeavesNothing(t *testing.T) {
	e := newFSEnv(t)
	e.export = func(id, dir string) error {
		writeTestExport(id, dir)
		return errdefs.New(errdefs.Unavailable, "export broke")
	}
	_, err := e.snapshotFS("snap-bad")
	if errdefs.KindOf(err) != errdefs.Unavailable || !strings.Contains(err.Error(), "export broke") {
		t.Fatalf("CreateSnapshot = %v, want the export's error", err)
	}
	if _, err := e.st.Snapshot().SandboxSnapshot("snap-bad"); !errdefs.IsNotFound(err) {
		t.Fatalf("record of a failed snapshot: %v", err)
	}
	if list, _ := e.images.List(); len(list) != 1 {
		t.Fatalf("images after a failed snapshot: %+v", list)
	}
	if _, err := os.Stat(filepath.Join(e.snaps, snapshot.ObjectsDir, "snap-bad")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("files of a failed snapshot: %v", err)
	}
	e.record("stopped", rest.StateSuspended, "base")
	_, err = e.node.CreateSnapshot(context.Background(), &store.SandboxSnapshot{ID: "s2", Tenant: "t", Sandbox: "stopped", Mode: store.SnapshotModeFilesystem})
	checkNodeErr(t, err, errdefs.FailedPrecondition, "sandbox stopped is suspended: only a running sandbox can be snapshotted")
}

// TestFilesystemSnapshotUnsupported: a driver that cannot export.
func TestFilesystemSnapshotUnsupported(t *testing.T) {
	e := newEnv(t)
	e.start("src")
	_, err := e.node.CreateSnapshot(context.Background(), &store.SandboxSnapshot{ID: "s", Tenant: "t", Sandbox: "src", Mode: store.SnapshotModeFilesystem})
	checkNodeErr(t, err, errdefs.Unsupported, "runtime fake cannot snapshot a sandbox's filesystem")
}

// TestRecoverRemovesUnrecordedSnapshotImages: an image a crash left
// between create image and record is removed; a recorded one, an image
// someone named and an ordinary image stay.
func TestRecoverRemovesUnrecordedSnapshotImages(t *testing.T) {
	e := newFSEnv(t)
	ctx := context.Background()
	kept, err := e.snapshotFS("snap-kept")
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := e.images.Create(ctx, "", e.base.Layers, image.Config{Labels: map[string]string{SnapshotLabel: "snap-crashed"}},
		[]image.History{{Created: time.Unix(1, 0)}})
	if err != nil {
		t.Fatal(err)
	}
	named, err := e.images.Create(ctx, "mine", e.base.Layers, image.Config{Labels: map[string]string{SnapshotLabel: "snap-gone"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.node.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.images.Get(orphan.ID); !errdefs.IsNotFound(err) {
		t.Fatalf("unrecorded snapshot image: %v", err)
	}
	for _, ref := range []string{kept.FilesystemImage, named.ID, "base"} {
		if _, err := e.images.Get(ref); err != nil {
			t.Fatalf("image %s after Recover: %v", ref, err)
		}
	}
}

var _ driver.FilesystemExporter = exportingDriver{}
