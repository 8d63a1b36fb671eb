package den_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/api/rest"
	den "github.com/denhq/den/sdk/go"
	"github.com/denhq/den/sdk/go/dentest"
)

func TestImagePushPull(t *testing.T) {
	ctx := context.Background()
	srv, c := newREST(t)
	var pushed []den.Progress
	digest, err := c.Images().Push(ctx, rest.DefaultImage, "registry.test/team/base:v1", den.PushOptions{
		Progress: func(p den.Progress) { pushed = append(pushed, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(digest, "sha256:") || len(pushed) != 2 || pushed[0].Phase != rest.PhaseUploading {
		t.Fatalf("push = %q, progress %+v", digest, pushed)
	}
	if diff := cmp.Diff([]string{"registry.test/team/base:v1"}, srv.Registry()); diff != "" {
		t.Fatalf("registry (-want +got):\n%s", diff)
	}
	var phases []string
	img, err := c.Images().Pull(ctx, "registry.test/team/base:v1", den.PullOptions{
		Progress: func(p den.Progress) { phases = append(phases, p.Phase) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if img.Name != "registry.test/team/base:v1" || img.Digest != digest {
		t.Fatalf("pulled %+v, want the pushed digest %s", img, digest)
	}
	if got, err := c.Images().Get(ctx, "registry.test/team/base:v1"); err != nil || got.Name != img.Name {
		t.Fatalf("Get of a name with slashes = %+v, %v", got, err)
	}
	want := []string{rest.PhaseResolving, rest.PhaseDownloading, rest.PhaseDownloading, rest.PhaseUnpacking}
	if diff := cmp.Diff(want, phases); diff != "" {
		t.Fatalf("pull phases (-want +got):\n%s", diff)
	}
}

// TestImageStreamErrors: an error line of a stream and an error answered
// before the stream began are both *APIError with code and status.
func TestImageStreamErrors(t *testing.T) {
	ctx := context.Background()
	srv := dentest.NewServer(dentest.Config{APIKey: testKey, RegistryError: func(ref string) *rest.Error {
		if strings.HasPrefix(ref, "down.test/") {
			return &rest.Error{Code: "unavailable", Message: "dial tcp down.test:443: connect: connection refused"}
		}
		return nil
	}})
	t.Cleanup(srv.Close)
	c, err := den.NewClient(den.Options{URL: srv.URL, APIKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		call       func() error
		wantStatus int
		wantCode   string
		wantErr    string
	}{
		{"pull of a missing image", func() error {
			_, err := c.Images().Pull(ctx, "registry.test/nosuch:1", den.PullOptions{})
			return err
		}, 404, den.CodeNotFound, "pull image registry.test/nosuch:1: pull image registry.test/nosuch:1: MANIFEST_UNKNOWN: manifest unknown (not_found)"},
		{"pull from a registry that is down", func() error {
			_, err := c.Images().Pull(ctx, "down.test/x:1", den.PullOptions{})
			return err
		}, 503, den.CodeUnavailable, "pull image down.test/x:1: dial tcp down.test:443: connect: connection refused (unavailable)"},
		{"push to a registry that is down", func() error {
			_, err := c.Images().Push(ctx, rest.DefaultImage, "down.test/x:1", den.PushOptions{})
			return err
		}, 503, den.CodeUnavailable, "push image base to down.test/x:1: dial tcp down.test:443: connect: connection refused (unavailable)"},
		{"push of a missing image", func() error {
			_, err := c.Images().Push(ctx, "nosuch", "registry.test/x:1", den.PushOptions{})
			return err
		}, 404, den.CodeNotFound, `push image nosuch to registry.test/x:1: get image: image "nosuch" not found (not_found)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var api *den.APIError
			if !errors.As(err, &api) {
				t.Fatalf("err = %v, want an *APIError", err)
			}
			if api.Status != tt.wantStatus || api.Code != tt.wantCode || err.Error() != tt.wantErr {
				t.Fatalf("err = %d %s %q, want %d %s %q", api.Status, api.Code, err, tt.wantStatus, tt.wantCode, tt.wantErr)
			}
		})
	}
}

// TestImageStreamWithoutResult: a stream cut short is an error, not a
// zero result.
func TestImageStreamWithoutResult(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", rest.NDJSONContentType)
		io.WriteString(w, `{"progress":{"phase":"resolving","current":0,"total":0}}`+"\n")
	}))
	t.Cleanup(hs.Close)
	c, err := den.NewClient(den.Options{URL: hs.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Images().Pull(context.Background(), "x", den.PullOptions{})
	want := "pull image x: read answer: the server ended the answer without a result"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

// writeTree writes files (name -> content; content "->T" makes a symbolic
// link to T) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if target, ok := strings.CutPrefix(content, "->"); ok {
			err = os.Symlink(target, p)
		} else {
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestImageBuild(t *testing.T) {
	ctx := context.Background()
	srv, c := newREST(t)
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"Dockerfile":            "FROM base\n# a comment\nCOPY . /app\nRUN make\n",
		".dockerignore":         "# build output\n*.log\n!keep.log\nsecret\n!secret/allowed.txt\nnode_modules\nDockerfile\n",
		"main.go":               "package main\n",
		"debug.log":             "noise",
		"keep.log":              "kept",
		"secret/key.pem":        "private",
		"secret/allowed.txt":    "public",
		"node_modules/a/x.js":   "x",
		"src/lib/util.go":       "package lib\n",
		"src/link":              "->lib/util.go",
		"src/lib/deeper/x.log":  "kept: *.log matches at the top only",
		"node_modules.txt.keep": "not the ignored directory",
	})
	var log bytes.Buffer
	res, err := c.Images().Build(ctx, den.BuildOptions{
		ContextDir: dir, Tags: []string{"app:v1", "app:latest"}, BuildArgs: map[string]string{"GREETING": "hi"},
		Target: "final", NoCache: true, Log: &log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "#1 FROM base\n#2 COPY . /app\n#3 RUN make\n"; log.String() != want {
		t.Fatalf("log = %q, want %q", log.String(), want)
	}
	if res.Steps != 3 || !strings.HasPrefix(res.ImageID, "sha256:") || !cmp.Equal(res.Tags, []string{"app:v1", "app:latest"}) {
		t.Fatalf("result %+v", res)
	}
	got := srv.Builds()[0]
	want := dentest.Build{
		// .dockerignore and the Dockerfile are always sent; secret/ itself
		// is not, but the file a "!" pattern lets back in below it is.
		Files: []string{".dockerignore", "Dockerfile", "keep.log", "main.go", "node_modules.txt.keep",
			"secret/allowed.txt", "src/", "src/lib/", "src/lib/deeper/", "src/lib/deeper/x.log", "src/lib/util.go", "src/link"},
		Dockerfile: "Dockerfile", Content: "FROM base\n# a comment\nCOPY . /app\nRUN make\n",
		Tags: []string{"app:v1", "app:latest"}, BuildArgs: []string{"GREETING=hi"}, Target: "final", NoCache: true,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("build (-want +got):\n%s", diff)
	}
	if _, err := c.Images().Get(ctx, "app:latest"); err != nil {
		t.Fatalf("built image not stored under its tag: %v", err)
	}
}

// TestImageBuildDockerfileOutsideContext: a Dockerfile outside the context
// travels with it under a name of its own.
func TestImageBuildDockerfileOutsideContext(t *testing.T) {
	srv, c := newREST(t)
	dir, other := t.TempDir(), t.TempDir()
	writeTree(t, dir, map[string]string{"a.txt": "a"})
	writeTree(t, other, map[string]string{"Build.dockerfile": "FROM base\n"})
	if _, err := c.Images().Build(context.Background(), den.BuildOptions{
		ContextDir: dir, Dockerfile: filepath.Join(other, "Build.dockerfile"), Tags: []string{"x"},
	}); err != nil {
		t.Fatal(err)
	}
	b := srv.Builds()[0]
	if len(b.Files) != 2 || b.Files[0] != "a.txt" || b.Files[1] != b.Dockerfile ||
		!strings.HasPrefix(b.Dockerfile, ".den-dockerfile-") || b.Content != "FROM base\n" {
		t.Fatalf("build %+v", b)
	}
}

func TestImageBuildErrors(t *testing.T) {
	ctx := context.Background()
	_, c := newREST(t)
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"Dockerfile": "FROM base\nRUN false\n", "Other": "FROM base\n"})
	var log bytes.Buffer
	_, err := c.Images().Build(ctx, den.BuildOptions{ContextDir: dir, Log: &log})
	var api *den.APIError
	if !errors.As(err, &api) || api.Code != den.CodeFailedPrecondition ||
		err.Error() != "build image: Dockerfile:2: RUN false: exit code 1 (failed_precondition)" {
		t.Fatalf("err = %v", err)
	}
	if log.String() != "#1 FROM base\n#2 RUN false\n" {
		t.Fatalf("log before the failure = %q", log.String())
	}
	for _, tc := range []struct {
		name string
		opts den.BuildOptions
		want string
	}{
		{"no context", den.BuildOptions{}, "build image: no build context: set BuildOptions.ContextDir"},
		{"context is a file", den.BuildOptions{ContextDir: filepath.Join(dir, "Other")},
			"build image: build context " + filepath.Join(dir, "Other") + " is not a directory"},
		{"missing Dockerfile", den.BuildOptions{ContextDir: dir, Dockerfile: "Nope"},
			"build image: dockerfile: lstat " + filepath.Join(dir, "Nope") + ": no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Images().Build(ctx, tc.opts)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestImageTagInspectExportPrune(t *testing.T) {
	ctx := context.Background()
	_, c := newREST(t)
	img, err := c.Images().Tag(ctx, rest.DefaultImage, "base:v2")
	if err != nil || img.Name != "base:v2" {
		t.Fatalf("Tag = %+v, %v", img, err)
	}
	d, err := c.Images().Inspect(ctx, "base:v2")
	if err != nil || d.Name != "base:v2" || len(d.Layers) != 1 {
		t.Fatalf("Inspect = %+v, %v", d, err)
	}
	var buf bytes.Buffer
	if err := c.Images().Export(ctx, "base:v2", rest.ExportOCI, &buf); err != nil {
		t.Fatal(err)
	}
	hdr, err := tar.NewReader(&buf).Next()
	if err != nil || hdr.Name != "oci-layout" {
		t.Fatalf("export: first entry %+v, %v", hdr, err)
	}
	err = c.Images().Export(ctx, "base:v2", "zip", io.Discard)
	if !den.IsInvalidArgument(err) || err.Error() != `export image base:v2: format "zip" is invalid: use docker-archive or oci (invalid_argument)` {
		t.Fatalf("export zip: %v", err)
	}
	if _, err := c.Images().Inspect(ctx, "nosuch"); !den.IsNotFound(err) {
		t.Fatalf("inspect nosuch: %v", err)
	}
	if _, err := c.Images().Prune(ctx); err != nil {
		t.Fatal(err)
	}
}
