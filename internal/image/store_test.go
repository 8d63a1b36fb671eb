package image_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/testenv"
)

// openStoreDir is openStore that also returns the store's directory.
func openStoreDir(t *testing.T) (*image.Store, string) {
	t.Helper()
	testenv.RequireRoot(t)
	dir := t.TempDir()
	s, err := image.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s, dir
}

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// replaceInTar rewrites the tar archive, passing each regular file's body
// through edit.
func replaceInTar(t *testing.T, archive []byte, edit func(name string, body []byte) []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	tr, tw := tar.NewReader(bytes.NewReader(archive)), tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		if h.Typeflag == tar.TypeReg {
			body = edit(h.Name, body)
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	tw.Close()
	return out.Bytes()
}

func TestImportRejects(t *testing.T) {
	good := layerOf(t, reg("a", "a"))
	goodImg := imageOf(t, good)
	goodDiff := diffIDs(t, goodImg)[0]
	other, _ := layerOf(t, reg("b", "b")).Compressed()
	otherGz, _ := io.ReadAll(other)
	otherDiff, _ := layerOf(t, reg("b", "b")).DiffID()
	layerDigest, _ := good.Digest()
	isLayer := func(name string) bool { return strings.HasPrefix(name, layerDigest.Hex) }
	traversal := func(e ...entry) []byte { return dockerArchive(t, imageOf(t, layerOf(t, e...)), "bad:1") }
	tests := []struct {
		name    string
		archive []byte
		as      string
		kind    errdefs.Kind
		want    string // the whole message, or its start when it ends in "…"
	}{
		{"dotdot entry", traversal(reg("../evil", "x")), "", errdefs.InvalidArgument,
			`import image bad:1: unpack layer sha256:…`},
		{"symlink parent", traversal(symlink("etc", "/tmp"), reg("etc/evil", "x")), "", errdefs.InvalidArgument,
			`import image bad:1: unpack layer sha256:…`},
		{"hard link out", traversal(hardlink("passwd", "../../etc/passwd")), "", errdefs.InvalidArgument,
			`import image bad:1: unpack layer sha256:…`},
		{"replaced layer", replaceInTar(t, dockerArchive(t, goodImg, "corrupt:1"), func(name string, b []byte) []byte {
			if isLayer(name) {
				return otherGz
			}
			return b
		}), "", errdefs.InvalidArgument,
			fmt.Sprintf("import image corrupt:1: layer %s is corrupt: its content has digest %s", goodDiff, otherDiff)},
		{"flipped byte", replaceInTar(t, dockerArchive(t, goodImg, "corrupt:1"), func(name string, b []byte) []byte {
			if isLayer(name) {
				b[len(b)/2] ^= 0xff
			}
			return b
		}), "", errdefs.InvalidArgument, fmt.Sprintf("import image corrupt:1: layer %s is corrupt: …", goodDiff)},
		{"no name", dockerArchive(t, goodImg, ""), "", errdefs.InvalidArgument,
			"import image: docker archive has no RepoTags: give the image a name"},
		{"bad name", dockerArchive(t, goodImg, "x:1"), "a b", errdefs.InvalidArgument,
			`import image: image name "a b" contains a space or control character`},
		{"not an image", tarOf(t, reg("hello", "x")), "x", errdefs.InvalidArgument,
			"import image: archive is neither a docker archive (no manifest.json) nor an OCI layout (no oci-layout)"},
		{"oci without name", ociArchive(t, goodImg, nil), "", errdefs.InvalidArgument,
			"import image: OCI layout names no image: give the image a name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, dir := openStoreDir(t)
			_, err := s.Import(context.Background(), bytes.NewReader(tt.archive), tt.as, nil)
			if err == nil {
				t.Fatal("Import succeeded, want an error")
			}
			if got := errdefs.KindOf(err); got != tt.kind {
				t.Errorf("error kind = %v, want %v (%v)", got, tt.kind, err)
			}
			if prefix, ok := strings.CutSuffix(tt.want, "…"); ok {
				if !strings.HasPrefix(err.Error(), prefix) {
					t.Errorf("error = %q, want it to start with %q", err, prefix)
				}
			} else if err.Error() != tt.want {
				t.Errorf("error = %q, want %q", err, tt.want)
			}
			if list, _ := s.List(); len(list) != 0 {
				t.Errorf("List = %v after a failed import, want empty", list)
			}
			for _, sub := range []string{"layers", "tmp"} {
				if names := dirNames(t, filepath.Join(dir, sub)); len(names) != 0 {
					t.Errorf("%s/ holds %v after a failed import, want empty", sub, names)
				}
			}
		})
	}
}

func TestImportTraversalMessages(t *testing.T) {
	tests := []struct {
		name    string
		entries []entry
		want    string
	}{
		{"dotdot entry", []entry{reg("../evil", "x")}, `entry "../evil": path traversal: "../evil" leaves the layer`},
		{"symlink parent", []entry{symlink("etc", "/tmp"), reg("etc/evil", "x")}, `entry "etc/evil": path traversal: "etc" is a symlink`},
		{"hard link out", []entry{hardlink("passwd", "../../etc/passwd")}, `entry "passwd": path traversal: "../../etc/passwd" leaves the layer`},
		{"whiteout of dotdot", []entry{reg("a/.wh...", "")}, `entry "a/.wh...": invalid whiteout name ".wh..."`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			l := layerOf(t, tt.entries...)
			diff, _ := l.DiffID()
			_, err := s.Import(context.Background(), bytes.NewReader(dockerArchive(t, imageOf(t, l), "bad:1")), "", nil)
			want := fmt.Sprintf("import image bad:1: unpack layer %s: %s", diff, tt.want)
			if err == nil || err.Error() != want || !errdefs.Is(err, errdefs.InvalidArgument) {
				t.Errorf("Import error = %v (kind %v),\nwant %s (invalid_argument)", err, errdefs.KindOf(err), want)
			}
			if _, err := os.Lstat("/tmp/evil"); err == nil {
				t.Errorf("/tmp/evil exists: a traversal escaped")
			}
		})
	}
}

func TestImportCanceled(t *testing.T) {
	s, dir := openStoreDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Import(ctx, bytes.NewReader(dockerArchive(t, imageOf(t, layerOf(t, reg("a", "a"))), "c:1")), "", nil)
	if !errdefs.Is(err, errdefs.Canceled) {
		t.Errorf("Import with a canceled context = %v, want canceled", err)
	}
	if names := dirNames(t, filepath.Join(dir, "tmp")); len(names) != 0 {
		t.Errorf("tmp/ = %v, want empty", names)
	}
}

// importImage imports the layers (bottom first) as name.
func importImage(t *testing.T, s *image.Store, name string, layers ...entry) *image.Image {
	t.Helper()
	var ls []v1.Layer
	for _, e := range layers {
		ls = append(ls, layerOf(t, e))
	}
	img, err := s.Import(context.Background(), bytes.NewReader(dockerArchive(t, imageOf(t, ls...), name)), "", nil)
	if err != nil {
		t.Fatalf("Import %s: %v", name, err)
	}
	return img
}

func layerExists(s *image.Store, img *image.Image, i int, dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "layers", strings.TrimPrefix(img.Layers[i], "sha256:")))
	return err == nil
}

func TestRemoveKeepsSharedLayers(t *testing.T) {
	s, dir := openStoreDir(t)
	a := importImage(t, s, "a:1", reg("shared", "s"), reg("only-a", "a"))
	b := importImage(t, s, "b:1", reg("shared", "s"), reg("only-b", "b"))
	if a.Layers[0] != b.Layers[0] {
		t.Fatalf("the shared layer differs: %s, %s", a.Layers[0], b.Layers[0])
	}
	if err := s.Remove("a:1"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if !layerExists(s, b, 0, dir) || layerExists(s, a, 1, dir) || !layerExists(s, b, 1, dir) {
		t.Errorf("after removing a: shared %v, only-a %v, only-b %v; want true, false, true",
			layerExists(s, b, 0, dir), layerExists(s, a, 1, dir), layerExists(s, b, 1, dir))
	}
	if _, err := s.Rootfs("b:1"); err != nil {
		t.Errorf("Rootfs(b) after removing a: %v", err)
	}
	if err := s.Remove(b.ID[7:19]); err != nil {
		t.Fatalf("Remove by ID prefix: %v", err)
	}
	if names := dirNames(t, filepath.Join(dir, "layers")); len(names) != 0 {
		t.Errorf("layers/ = %v after removing every image, want empty", names)
	}
	err := s.Remove("a:1")
	if want := `remove image: image "a:1" not found`; err == nil || err.Error() != want || !errdefs.IsNotFound(err) {
		t.Errorf("Remove of a removed image = %v, want %s (not_found)", err, want)
	}
}

func TestTagAndRemoveByName(t *testing.T) {
	s, dir := openStoreDir(t)
	a := importImage(t, s, "a:1", reg("f", "a"))
	b := importImage(t, s, "b:1", reg("f", "b"))
	tests := []struct {
		name, ref, newName string
		kind               errdefs.Kind
		want               string
	}{
		{"new name", "a:1", "alias", 0, ""},
		{"same image again", "alias", "a:1", 0, ""},
		{"taken", "a:1", "b:1", errdefs.AlreadyExists, fmt.Sprintf(`tag image a:1: name "b:1" is used by image %s`, b.ID)},
		{"missing", "nope", "x", errdefs.NotFound, `tag image: image "nope" not found`},
		{"bad name", "a:1", "", errdefs.InvalidArgument, "tag image a:1: image name is empty"},
		{"id-like name", "a:1", "sha256:abc", errdefs.InvalidArgument, `tag image a:1: image name "sha256:abc" looks like an ID`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Tag(tt.ref, tt.newName)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Tag: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want || errdefs.KindOf(err) != tt.kind {
				t.Errorf("Tag error = %v (%v), want %s (%v)", err, errdefs.KindOf(err), tt.want, tt.kind)
			}
		})
	}
	if got, err := s.Get("alias:latest"); err != nil || got.ID != a.ID {
		t.Errorf("Get(alias:latest) = %v, %v; want image a", got, err)
	}
	if err := s.Remove("a:1"); err != nil {
		t.Fatal(err)
	}
	if !layerExists(s, a, 0, dir) {
		t.Errorf("removing name a:1 deleted the layer still named alias")
	}
	list, _ := s.List()
	var names []string
	for _, img := range list {
		names = append(names, img.Name)
	}
	if diff := cmp.Diff([]string{"alias", "b:1"}, names); diff != "" {
		t.Errorf("List names (-want +got):\n%s", diff)
	}
}

func TestImportMovesName(t *testing.T) {
	s, dir := openStoreDir(t)
	old := importImage(t, s, "x:1", reg("f", "old"))
	img := importImage(t, s, "x:1", reg("f", "new"))
	if got, err := s.Get("x:1"); err != nil || got.ID != img.ID || got.ID == old.ID {
		t.Errorf("Get(x:1) = %v, %v; want the new image %s", got, err, img.ID)
	}
	if layerExists(s, old, 0, dir) {
		t.Errorf("the replaced image's layer is still on disk")
	}
}

func TestGetErrors(t *testing.T) {
	s := openStore(t)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	byFirst := map[byte]string{}
	var ambiguous string
	for i := 0; ambiguous == ""; i++ {
		img, err := s.ImportDir(context.Background(), src, fmt.Sprintf("img%d", i), image.Config{Env: []string{fmt.Sprint("N=", i)}})
		if err != nil {
			t.Fatal(err)
		}
		c := img.ID[len("sha256:")]
		if _, ok := byFirst[c]; ok {
			ambiguous = string(c)
		}
		byFirst[c] = img.ID
	}
	tests := []struct {
		ref  string
		kind errdefs.Kind
		want string
	}{
		{"nope", errdefs.NotFound, `get image: image "nope" not found`},
		{"sha256:", errdefs.NotFound, `get image: image "sha256:" not found`},
		{"ffff" + strings.Repeat("0", 60), errdefs.NotFound, `get image: image "ffff` + strings.Repeat("0", 60) + `" not found`},
		{ambiguous, errdefs.InvalidArgument, fmt.Sprintf(`get image: image ID prefix %q is ambiguous`, ambiguous)},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			_, err := s.Get(tt.ref)
			if err == nil || err.Error() != tt.want || errdefs.KindOf(err) != tt.kind {
				t.Errorf("Get error = %v (%v), want %s (%v)", err, errdefs.KindOf(err), tt.want, tt.kind)
			}
		})
	}
}

func TestOpenCleansLeftovers(t *testing.T) {
	s, dir := openStoreDir(t)
	img := importImage(t, s, "keep:1", reg("f", "x"))
	// What a killed import leaves: its work directory, a half-unpacked
	// layer, and a complete layer renamed into place but never recorded.
	orphan := filepath.Join(dir, "layers", strings.Repeat("ab", 32))
	for _, d := range []string{filepath.Join(dir, "tmp", "import-1", "layout"), filepath.Join(dir, "tmp", "layer-2", "etc"), orphan} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "file"), []byte("half"), 0o644)
	}
	staleIndex := filepath.Join(dir, ".index.json.tmp-123")
	os.WriteFile(staleIndex, []byte(`{"ver`), 0o644)
	s2, err := image.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if names := dirNames(t, filepath.Join(dir, "tmp")); len(names) != 0 {
		t.Errorf("tmp/ = %v after Open, want empty", names)
	}
	if _, err := os.Stat(staleIndex); !os.IsNotExist(err) {
		t.Errorf("half-written index file survived Open: %v", err)
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("unrecorded layer survived Open: %v", err)
	}
	got, err := s2.Get("keep:1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(img, got); diff != "" {
		t.Errorf("image after reopen (-want +got):\n%s", diff)
	}
	if _, err := s2.Rootfs("keep:1"); err != nil {
		t.Errorf("Rootfs after reopen: %v", err)
	}
}

func TestConcurrentImportsShareLayer(t *testing.T) {
	s, dir := openStoreDir(t)
	archive := dockerArchive(t, imageOf(t, layerOf(t, reg("f", "same"))), "same:1")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = s.Import(context.Background(), bytes.NewReader(archive), fmt.Sprintf("c%d", i), nil)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent imports: %v", err)
	}
	if names := dirNames(t, filepath.Join(dir, "layers")); len(names) != 1 {
		t.Errorf("layers/ = %v, want one shared layer", names)
	}
	if names := dirNames(t, filepath.Join(dir, "tmp")); len(names) != 0 {
		t.Errorf("tmp/ = %v, want empty", names)
	}
}
