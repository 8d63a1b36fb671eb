package image_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/testenv"
)

// sameImage compares what must survive a push and pull, or an export and
// import: ID, layers, blobs, config and history.
func sameImage(t *testing.T, want, got *image.Image) {
	t.Helper()
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(image.Image{}, "Name", "CreatedAt")); diff != "" {
		t.Errorf("image (-want +got):\n%s", diff)
	}
}

func TestPushThenPull(t *testing.T) {
	for _, token := range []bool{false, true} {
		t.Run(map[bool]string{false: "basic", true: "token"}[token], func(t *testing.T) {
			host := testenv.Registry(t, testenv.RegistryOptions{Username: "u", Password: "p", Token: token})
			s := openStore(t)
			src := richRootfs(t)
			local, err := s.ImportDir(context.Background(), src, "local", image.Config{Env: []string{image.DefaultPath}, ExposedPorts: []string{"8080/tcp"}})
			if err != nil {
				t.Fatal(err)
			}
			dest := host + "/team/app:v1"
			var events []image.Progress
			digest, err := s.Push(context.Background(), "local", dest, image.PushOptions{Username: "u", Password: "p"}, func(p image.Progress) { events = append(events, p) })
			if err != nil {
				t.Fatalf("Push: %v", err)
			}
			if digest != local.Digest {
				t.Errorf("Push digest = %s, want the stored manifest digest %s", digest, local.Digest)
			}
			if !hasEvent(events, "uploading", local.Blobs[0].Digest) {
				t.Errorf("progress = %+v, want uploading of the layer", events)
			}
			// Pushing again sends no layer.
			events = nil
			if _, err := s.Push(context.Background(), "local", dest, image.PushOptions{Username: "u", Password: "p"}, func(p image.Progress) { events = append(events, p) }); err != nil {
				t.Fatal(err)
			}
			if hasEvent(events, "uploading", local.Blobs[0].Digest) || !hasEvent(events, "exists", local.Blobs[0].Digest) {
				t.Errorf("second push progress = %+v, want exists and no uploading", events)
			}
			s2 := openStore(t)
			pulled, err := s2.Pull(context.Background(), dest, image.PullOptions{Username: "u", Password: "p"}, nil)
			if err != nil {
				t.Fatalf("Pull: %v", err)
			}
			sameImage(t, local, pulled)
			a, _ := s.Rootfs("local")
			b, _ := s2.Rootfs(dest)
			if diff := cmp.Diff(treeState(t, a.Layers[0]), treeState(t, b.Layers[0])); diff != "" {
				t.Errorf("pulled layer differs from the pushed one (-pushed +pulled):\n%s", diff)
			}
			_, err = s.Push(context.Background(), "local", dest, image.PushOptions{Username: "u", Password: "bad"}, nil)
			want := "push image local to " + dest + ": registry " + host + " rejected the credentials: "
			if err == nil || !strings.HasPrefix(err.Error(), want) || !errdefs.Is(err, errdefs.Unauthenticated) {
				t.Errorf("Push with a bad password = %v (%v), want %s… (unauthenticated)", err, errdefs.KindOf(err), want)
			}
		})
	}
}

func TestPushPulledImageKeepsDigest(t *testing.T) {
	src := imageOf(t, layerOf(t, reg("a", "a")), layerOf(t, reg("b", "b")))
	host := testenv.Registry(t, testenv.RegistryOptions{})
	seed(t, host+"/src:1", src)
	s := openStore(t)
	if _, err := s.Pull(context.Background(), host+"/src:1", image.PullOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	digest, err := s.Push(context.Background(), host+"/src:1", host+"/copy:1", image.PushOptions{}, nil)
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	if want := manifestDigest(t, src); digest != want {
		t.Errorf("pushed digest = %s, want the registry's %s", digest, want)
	}
	// "" pushes to the image's own name.
	if _, err := s.Push(context.Background(), host+"/src:1", "", image.PushOptions{}, nil); err != nil {
		t.Errorf("Push to its own name: %v", err)
	}
}

func TestExportRoundTrip(t *testing.T) {
	for _, format := range []string{image.FormatDockerArchive, image.FormatOCI} {
		t.Run(format, func(t *testing.T) {
			s := openStore(t)
			orig := importImage(t, s, "example.com/app:v1", reg("a", "a"), reg("b", "b"))
			var buf bytes.Buffer
			if err := s.Export(context.Background(), "example.com/app:v1", format, &buf); err != nil {
				t.Fatalf("Export: %v", err)
			}
			s2 := openStore(t)
			got, err := s2.Import(context.Background(), &buf, "", nil)
			if err != nil {
				t.Fatalf("Import of the export: %v", err)
			}
			if got.Name != "example.com/app:v1" {
				t.Errorf("imported name = %q, want example.com/app:v1", got.Name)
			}
			sameImage(t, orig, got)
			if got := fileIn(t, s2, "example.com/app:v1", "b"); got != "b" {
				t.Errorf("b = %q after the round trip", got)
			}
		})
	}
	s := openStore(t)
	importImage(t, s, "x:1", reg("a", "a"))
	err := s.Export(context.Background(), "x:1", "zip", &bytes.Buffer{})
	if want := `export image x:1: unknown format "zip": want "docker-archive" or "oci"`; err == nil || err.Error() != want || !errdefs.Is(err, errdefs.InvalidArgument) {
		t.Errorf("Export zip = %v, want %s", err, want)
	}
}

// stripBlobs rewrites the store's index.json as a den without the blob
// store wrote it, and reopens the store.
func stripBlobs(t *testing.T, dir string) *image.Store {
	t.Helper()
	path := filepath.Join(dir, "index.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var idx map[string]any
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatal(err)
	}
	delete(idx, "layer_blobs")
	for _, img := range idx["images"].([]any) {
		m := img.(map[string]any)
		delete(m, "blobs")
		delete(m, "digest")
		delete(m, "history")
	}
	if data, err = json.Marshal(idx); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "blobs", "sha256")); err != nil {
		t.Fatal(err)
	}
	s, err := image.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Open of a version 1 index without blobs: %v", err)
	}
	return s
}

func TestImagesWithoutBlobs(t *testing.T) {
	s, dir := openStoreDir(t)
	old := importImage(t, s, "old:1", reg("a", "a"))
	s = stripBlobs(t, dir)
	if _, err := s.Rootfs("old:1"); err != nil {
		t.Fatalf("Rootfs of an image without blobs: %v", err)
	}
	want := "image old:1 was recorded without its layer blobs (by an older den, or built on such an image): re-import or rebuild it"
	_, err := s.Push(context.Background(), "old:1", "127.0.0.1:1/x:1", image.PushOptions{}, nil)
	if err == nil || err.Error() != "push image old:1: "+want || !errdefs.Is(err, errdefs.FailedPrecondition) {
		t.Errorf("Push = %v (%v), want push image old:1: %s (failed_precondition)", err, errdefs.KindOf(err), want)
	}
	err = s.Export(context.Background(), "old:1", image.FormatOCI, &bytes.Buffer{})
	if err == nil || err.Error() != "export image old:1: "+want || !errdefs.Is(err, errdefs.FailedPrecondition) {
		t.Errorf("Export = %v (%v), want export image old:1: %s (failed_precondition)", err, errdefs.KindOf(err), want)
	}
	// A build on top of it runs, but cannot be pushed either.
	top, err := s.CommitLayer(context.Background(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.Create(context.Background(), "new:1", []string{old.Layers[0], top.DiffID}, image.Config{}, nil)
	if err != nil {
		t.Fatalf("Create on a layer without a blob: %v", err)
	}
	if img.Digest != "" || img.Blobs != nil || len(img.Layers) != 2 {
		t.Errorf("Create = %+v, want two layers, no blobs and no digest", img)
	}
	if _, err := s.Rootfs("new:1"); err != nil {
		t.Errorf("Rootfs: %v", err)
	}
	// Importing the image again gives it its blobs.
	again := importImage(t, s, "old:1", reg("a", "a"))
	checkBlobs(t, again)
	if err := s.Export(context.Background(), "old:1", image.FormatOCI, &bytes.Buffer{}); err != nil {
		t.Errorf("Export after re-import: %v", err)
	}
}

func TestInspect(t *testing.T) {
	s := openStore(t)
	img := importImage(t, s, "app:1", reg("a", "aaaa"), reg("b", "b"))
	d, err := s.Inspect("app:1")
	if err != nil {
		t.Fatal(err)
	}
	if d.ID != img.ID || d.Digest != img.Digest || len(d.Layers) != 2 {
		t.Fatalf("Inspect = %+v", d)
	}
	for i, l := range d.Layers {
		b := img.Blobs[i]
		if l.DiffID != img.Layers[i] || l.Digest != b.Digest || l.Size != b.Size || l.MediaType != b.MediaType || l.UnpackedSize < 1024 {
			t.Errorf("layer %d = %+v, want blob %+v and the tar size", i, l, b)
		}
	}
	var cfg struct {
		Config struct{ WorkingDir string }
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		}
	}
	if err := json.Unmarshal(d.RawConfig, &cfg); err != nil || cfg.Config.WorkingDir != "/work" || !cmp.Equal(cfg.RootFS.DiffIDs, img.Layers) {
		t.Errorf("RawConfig = %s, %v", d.RawConfig, err)
	}
	var m struct{ Layers []struct{ Digest string } }
	if err := json.Unmarshal(d.RawManifest, &m); err != nil || len(m.Layers) != 2 || m.Layers[1].Digest != img.Blobs[1].Digest {
		t.Errorf("RawManifest = %s, %v", d.RawManifest, err)
	}
	out, err := json.Marshal(d)
	if err != nil || !bytes.Contains(out, []byte(`"unpacked_size"`)) || !bytes.Contains(out, []byte(`"raw_config":{`)) {
		t.Errorf("JSON = %s, %v", out, err)
	}
	if _, err := s.Inspect("nope"); !errdefs.IsNotFound(err) || err.Error() != `inspect image: image "nope" not found` {
		t.Errorf("Inspect(nope) = %v", err)
	}
}
