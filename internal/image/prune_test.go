package image_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/errdefs"

	"github.com/denhq/den/internal/image"
)

// storeContent lists the layer directories and blobs on disk, by hex digest.
func storeContent(t *testing.T, dir string) (layers, blobs []string) {
	t.Helper()
	return dirNames(t, filepath.Join(dir, "layers")), dirNames(t, filepath.Join(dir, "blobs", "sha256"))
}

// imageBlobs lists the hex digests of img's config, manifest and layer blobs.
func imageBlobs(img *image.Image) []string {
	out := []string{img.ID, img.Digest}
	for _, b := range img.Blobs {
		out = append(out, b.Digest)
	}
	for i := range out {
		out[i] = strings.TrimPrefix(out[i], "sha256:")
	}
	return out
}

func hexes(digests ...string) []string {
	var out []string
	for _, d := range digests {
		out = append(out, strings.TrimPrefix(d, "sha256:"))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func TestRemoveDropsUnusedBlobs(t *testing.T) {
	s, dir := openStoreDir(t)
	a := importImage(t, s, "a:1", reg("shared", "s"), reg("only-a", "a"))
	b := importImage(t, s, "b:1", reg("shared", "s"), reg("only-b", "b"))
	if err := s.Remove("a:1"); err != nil {
		t.Fatal(err)
	}
	layers, blobs := storeContent(t, dir)
	if diff := cmp.Diff(hexes(b.Layers...), layers); diff != "" {
		t.Errorf("layers after removing a (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(hexes(imageBlobs(b)...), blobs); diff != "" {
		t.Errorf("blobs after removing a (-want +got):\n%s", diff)
	}
	_ = a
}

func TestPruneHonoursHoldsAndLeases(t *testing.T) {
	s, dir := openStoreDir(t)
	ctx := context.Background()
	keep := importImage(t, s, "keep:1", reg("k", "k"))
	leased := importImage(t, s, "leased:1", reg("l", "l"), reg("m", "m"))

	// A committed layer is held until an image uses it or a lease ends.
	upper := t.TempDir()
	mkTree(t, upper, map[string]string{"new": "new"})
	committed, err := s.CommitLayer(ctx, upper, nil)
	if err != nil {
		t.Fatal(err)
	}
	// leased's layers outlive the image while leased.
	release := s.Lease(leased.Layers)
	if err := s.Remove("leased:1"); err != nil {
		t.Fatal(err)
	}
	// Leftovers: an unreferenced blob and an abandoned partial download.
	orphan := strings.Repeat("ab", 32)
	must(t, os.WriteFile(filepath.Join(dir, "blobs", "sha256", orphan), []byte("orphan"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "partial", strings.Repeat("cd", 32)), []byte("partial"), 0o644))

	report, err := s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (image.PruneReport{Blobs: 1, Bytes: int64(len("orphan") + len("partial"))}); report != want {
		t.Errorf("first Prune = %+v, want %+v", report, want)
	}
	layers, blobs := storeContent(t, dir)
	wantLayers := hexes(append(append([]string{committed.DiffID}, keep.Layers...), leased.Layers...)...)
	wantBlobs := hexes(append(imageBlobs(keep), committed.Digest, leased.Blobs[0].Digest, leased.Blobs[1].Digest)...)
	if diff := cmp.Diff(wantLayers, layers); diff != "" {
		t.Errorf("layers after the first Prune (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantBlobs, blobs); diff != "" {
		t.Errorf("blobs after the first Prune (-want +got):\n%s", diff)
	}
	if names := dirNames(t, filepath.Join(dir, "partial")); len(names) != 0 {
		t.Errorf("partial/ = %v after Prune, want empty", names)
	}

	// Releasing the lease frees leased's layers; releasing twice is harmless.
	release()
	release()
	endHold := s.Lease([]string{committed.DiffID})
	endHold()
	report, err = s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if report.Layers != 3 || report.Blobs != 3 || report.Bytes <= 0 {
		t.Errorf("second Prune = %+v, want 3 layers and 3 blobs", report)
	}
	layers, blobs = storeContent(t, dir)
	if diff := cmp.Diff(hexes(keep.Layers...), layers); diff != "" {
		t.Errorf("layers after the second Prune (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(hexes(imageBlobs(keep)...), blobs); diff != "" {
		t.Errorf("blobs after the second Prune (-want +got):\n%s", diff)
	}
	if _, err := s.Rootfs("keep:1"); err != nil {
		t.Errorf("Rootfs(keep) after Prune: %v", err)
	}
	if report, err := s.Prune(ctx); err != nil || report != (image.PruneReport{}) {
		t.Errorf("third Prune = %+v, %v; want nothing to do", report, err)
	}
}

func TestCreateReleasesHold(t *testing.T) {
	s, dir := openStoreDir(t)
	ctx := context.Background()
	upper := t.TempDir()
	mkTree(t, upper, map[string]string{"f": "f"})
	l, err := s.CommitLayer(ctx, upper, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "img:1", []string{l.DiffID}, image.Config{}, nil); err != nil {
		t.Fatal(err)
	}
	// Once an image uses the layer, removing the image frees it.
	if err := s.Remove("img:1"); err != nil {
		t.Fatal(err)
	}
	layers, blobs := storeContent(t, dir)
	if len(layers)+len(blobs) != 0 {
		t.Errorf("after removing the only image: layers %v, blobs %v; want none", layers, blobs)
	}
}

func TestOpenRemovesUnreferencedContent(t *testing.T) {
	s, dir := openStoreDir(t)
	img := importImage(t, s, "keep:1", reg("f", "x"))
	upper := t.TempDir()
	mkTree(t, upper, map[string]string{"f": "f"})
	committed, err := s.CommitLayer(context.Background(), upper, nil)
	if err != nil {
		t.Fatal(err)
	}
	abandoned := strings.Repeat("cd", 32)
	must(t, os.WriteFile(filepath.Join(dir, "partial", abandoned), []byte("partial"), 0o644))
	// A restart forgets holds: the committed layer goes and its blob moves
	// to partial/, where a pull would check it before use; partial
	// downloads stay.
	if _, err := image.Open(dir, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	layers, blobs := storeContent(t, dir)
	if diff := cmp.Diff(hexes(img.Layers...), layers); diff != "" {
		t.Errorf("layers after Open (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(hexes(imageBlobs(img)...), blobs); diff != "" {
		t.Errorf("blobs after Open (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(hexes(abandoned, committed.Digest), dirNames(t, filepath.Join(dir, "partial"))); diff != "" {
		t.Errorf("partial/ after Open (-want +got):\n%s", diff)
	}
}

// TestGCKeepsMountedLayers: a layer a running sandbox stands on (a lower dir
// of an overlay mount) survives Remove of its image and Prune until the
// mount is gone.
func TestGCKeepsMountedLayers(t *testing.T) {
	s, dir := openStoreDir(t)
	img := importImage(t, s, "mounted:1", reg("f", "in use"))
	rootfs, err := s.Rootfs("mounted:1")
	must(t, err)
	mnt := t.TempDir()
	lower := rootfs.Layers[0]
	// Overlay needs two lower dirs for a mount without an upper dir.
	must(t, unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+lower+":"+t.TempDir()))
	mounted := true
	t.Cleanup(func() {
		if mounted {
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	must(t, s.Remove("mounted:1"))
	if _, err := s.Prune(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !layerExists(s, img, 0, dir) {
		t.Fatal("Remove and Prune deleted a layer a mount stands on")
	}
	if data, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(data) != "in use" {
		t.Fatalf("file of the mounted layer = %q, %v", data, err)
	}
	must(t, unix.Unmount(mnt, 0))
	mounted = false
	r, err := s.Prune(context.Background())
	if err != nil || r.Layers != 1 || layerExists(s, img, 0, dir) {
		t.Errorf("Prune after unmount = %+v, %v, layer present %v; want 1 layer removed", r, err, layerExists(s, img, 0, dir))
	}
}

// TestOpenKeepsBuildCacheLayers: a committed layer recorded in the index
// (a build's cache) survives a restart; Prune removes it.
func TestOpenKeepsBuildCacheLayers(t *testing.T) {
	s, dir := openStoreDir(t)
	upper := t.TempDir()
	mkTree(t, upper, map[string]string{"cached": "c"})
	committed, err := s.CommitLayer(context.Background(), upper, nil)
	must(t, err)
	release := s.Lease([]string{committed.DiffID})
	importImage(t, s, "other:1", reg("g", "y")) // writes the index, with the committed layer's record
	release()
	s2, err := image.Open(dir, slog.New(slog.DiscardHandler))
	must(t, err)
	if _, err := s2.LayerDir(committed.DiffID); err != nil {
		t.Fatalf("committed layer after Open: %v", err)
	}
	r, err := s2.Prune(context.Background())
	if err != nil || r.Layers != 1 {
		t.Fatalf("Prune = %+v, %v; want the cached layer removed", r, err)
	}
	if _, err := s2.LayerDir(committed.DiffID); !errdefs.IsNotFound(err) {
		t.Errorf("committed layer after Prune: %v, want not found", err)
	}
}
