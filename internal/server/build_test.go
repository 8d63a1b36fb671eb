package server

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	den "github.com/denhq/den/sdk/go"
)

// fakeBuilder is a Builder whose Build is a function field; it remembers
// the requests and the files of each context.
type fakeBuilder struct {
	build func(ctx context.Context, req BuildRequest) (BuildResult, error)

	mu    sync.Mutex
	reqs  []BuildRequest
	files [][]string // per build: "name", "dir/", "link -> target"
}

func (b *fakeBuilder) Build(ctx context.Context, req BuildRequest) (BuildResult, error) {
	files, err := listTree(req.ContextDir)
	if err != nil {
		return BuildResult{}, err
	}
	b.mu.Lock()
	b.reqs = append(b.reqs, req)
	b.files = append(b.files, files)
	b.mu.Unlock()
	return b.build(ctx, req)
}

func (b *fakeBuilder) last() (BuildRequest, []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reqs[len(b.reqs)-1], b.files[len(b.files)-1]
}

// listTree lists dir: files as "name", directories as "name/" and
// symbolic links as "name -> target".
func listTree(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			rel += " -> " + target
		case d.IsDir():
			rel += "/"
		}
		out = append(out, rel)
		return nil
	})
	return out, err
}

// tarEntry is one entry of a test tar: a file with body, a directory
// (name ending in "/"), or a link (typ tar.TypeSymlink or tar.TypeLink).
type tarEntry struct {
	name, body, link string
	typ              byte
}

func tarOf(t *testing.T, entries ...tarEntry) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Mode: 0o644, Typeflag: e.typ, Linkname: e.link, ModTime: t0}
		switch {
		case e.typ != 0:
		case strings.HasSuffix(e.name, "/"):
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		default:
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func newBuildEnv(t *testing.T, b *fakeBuilder) (*testEnv, string) {
	t.Helper()
	e := newTestEnv(t, func(c *Config) {
		c.Builder = b
		c.MaxBuildContext = 8 << 10
	})
	return e, e.addAdminKey()
}

// TestBuildStreamsLogAndResult: the context arrives unpacked, the
// builder's output streams as one {"log"} line per line, the result ends
// the stream and the context directory is gone afterwards.
func TestBuildStreamsLogAndResult(t *testing.T) {
	t.Parallel()
	b := &fakeBuilder{build: func(_ context.Context, req BuildRequest) (BuildResult, error) {
		io.WriteString(req.Log, "#1 FROM busybox\n#2 RUN ma")
		io.WriteString(req.Log, "ke\r\n\n")
		io.WriteString(req.Log, "no newline at the end")
		return BuildResult{ImageID: "sha256:abc", Tags: req.Tags, Steps: 2, CachedSteps: 1, RunSteps: 1, Duration: 1500 * time.Millisecond}, nil
	}}
	e, admin := newBuildEnv(t, b)
	body := tarOf(t,
		tarEntry{name: "./"},
		tarEntry{name: "build/Dockerfile", body: "FROM busybox\n"},
		tarEntry{name: "src/main.go", body: "package main\n"},
		tarEntry{name: "src/link", link: "main.go", typ: tar.TypeSymlink},
		tarEntry{name: "abs", link: "/etc/passwd", typ: tar.TypeSymlink},
		tarEntry{name: "src/hard", link: "src/main.go", typ: tar.TypeLink},
	)
	q := "?t=app:1&t=app:latest&dockerfile=build/Dockerfile&target=final&build_arg=A=1&build_arg=B=x%3Dy&no_cache=1&pull=true"
	status, got := e.do("POST", "/v1/images/build"+q, admin, body)
	want := `{"log":"#1 FROM busybox"}
{"log":"#2 RUN make"}
{"log":""}
{"log":"no newline at the end"}
{"result":{"image_id":"sha256:abc","tags":["app:1","app:latest"],"steps":2,"cached_steps":1,"run_steps":1,"duration_ms":1500}}
`
	if status != 200 || string(got) != want {
		t.Fatalf("status %d, answer:\n%s\nwant:\n%s", status, got, want)
	}
	req, files := b.last()
	wantReq := BuildRequest{
		ContextDir: req.ContextDir, Dockerfile: "build/Dockerfile", Tags: []string{"app:1", "app:latest"},
		BuildArgs: map[string]string{"A": "1", "B": "x=y"}, Target: "final", NoCache: true, Pull: true, Log: req.Log,
	}
	if diff := cmp.Diff(wantReq, req, cmp.Comparer(func(a, b io.Writer) bool { return a == b })); diff != "" {
		t.Fatalf("request (-want +got):\n%s", diff)
	}
	wantFiles := []string{"abs -> /etc/passwd", "build/", "build/Dockerfile", "src/", "src/hard", "src/link -> main.go", "src/main.go"}
	if diff := cmp.Diff(wantFiles, files); diff != "" {
		t.Fatalf("context (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(req.ContextDir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("context directory %s left behind: %v", req.ContextDir, err)
	}
}

// TestBuildThroughSDK: the SDK's context tar and the server agree, and
// a failure after output arrives as the SDK's APIError.
func TestBuildThroughSDK(t *testing.T) {
	t.Parallel()
	fail := errdefs.New(errdefs.FailedPrecondition, "Dockerfile:2: RUN false: exit code 1")
	b := &fakeBuilder{build: func(_ context.Context, req BuildRequest) (BuildResult, error) {
		fmt.Fprintln(req.Log, "#1 RUN false")
		if req.Target == "broken" {
			return BuildResult{}, fail
		}
		return BuildResult{ImageID: "sha256:def", Tags: req.Tags, Steps: 1}, nil
	}}
	e, admin := newBuildEnv(t, b)
	dir := t.TempDir()
	for name, content := range map[string]string{"Dockerfile": "FROM busybox\n", "keep.txt": "k", "skip.txt": "s", ".dockerignore": "skip.txt\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := e.sdkClient(admin)
	var log bytes.Buffer
	res, err := c.Images().Build(testCtx(t), den.BuildOptions{ContextDir: dir, Tags: []string{"x"}, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if res.ImageID != "sha256:def" || log.String() != "#1 RUN false\n" {
		t.Fatalf("result %+v, log %q", res, log.String())
	}
	if _, files := b.last(); !cmp.Equal(files, []string{".dockerignore", "Dockerfile", "keep.txt"}) {
		t.Fatalf("context files %v", files)
	}
	_, err = c.Images().Build(testCtx(t), den.BuildOptions{ContextDir: dir, Target: "broken"})
	var api *den.APIError
	if !errors.As(err, &api) || api.Code != "failed_precondition" || api.Message != fail.Error() {
		t.Fatalf("failing build: %v", err)
	}

	// Refused while the SDK still sends: the answer wins over the broken pipe.
	if err := os.WriteFile(filepath.Join(dir, "big"), bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = c.Images().Build(testCtx(t), den.BuildOptions{ContextDir: dir})
	if !errors.As(err, &api) || api.Status != 413 || api.Code != den.CodeTooLarge {
		t.Fatalf("build of a context over the limit: %v", err)
	}
}

// TestBuildErrors checks the status, code and message of every way a
// build request fails.
func TestBuildErrors(t *testing.T) {
	t.Parallel()
	b := &fakeBuilder{build: func(_ context.Context, req BuildRequest) (BuildResult, error) {
		if req.Target == "early" {
			return BuildResult{}, errdefs.New(errdefs.InvalidArgument, "Dockerfile:3: unknown instruction FROBNICATE")
		}
		fmt.Fprintln(req.Log, "#1 RUN exit 7")
		return BuildResult{}, errdefs.New(errdefs.FailedPrecondition, "Dockerfile:2: RUN exit 7: exit code 7")
	}}
	e, admin := newBuildEnv(t, b)
	ok := tarOf(t, tarEntry{name: "Dockerfile", body: "FROM busybox\n"})
	bad := func(msg string) rest.Error { return rest.Error{Code: "invalid_argument", Message: msg} }
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	io.WriteString(zw, "not a tar, compressed")
	zw.Close()
	tests := []struct {
		name       string
		query      string
		body       string
		wantStatus int
		want       rest.Error
	}{
		{"build arg without =", "?build_arg=FOO", ok, 400, bad(`build_arg "FOO" is invalid: use KEY=VALUE`)},
		{"build arg without key", "?build_arg==x", ok, 400, bad(`build_arg "=x" is invalid: use KEY=VALUE`)},
		{"unknown parameter", "?tag=x", ok, 400, bad(`unknown query parameter "tag": use t, dockerfile, target, build_arg, no_cache or pull`)},
		{"empty tag", "?t=", ok, 400, bad("t must be an image name, got an empty one")},
		{"bad no_cache", "?no_cache=yes", ok, 400, bad(`no_cache must be 1 or 0 (true or false), got "yes"`)},
		{"dockerfile outside", "?dockerfile=../Dockerfile", ok, 400, bad(`dockerfile "../Dockerfile" is invalid: give a relative path inside the build context`)},
		{"dockerfile absolute", "?dockerfile=/Dockerfile", ok, 400, bad(`dockerfile "/Dockerfile" is invalid: give a relative path inside the build context`)},
		{"no Dockerfile", "", tarOf(t, tarEntry{name: "a.txt", body: "a"}), 400,
			bad(`the build context has no Dockerfile at "Dockerfile": add it, or name it with dockerfile=PATH`)},
		{"Dockerfile is a directory", "", tarOf(t, tarEntry{name: "Dockerfile/"}), 400,
			bad(`the build context has no Dockerfile at "Dockerfile": add it, or name it with dockerfile=PATH`)},
		{"entry ../x", "", tarOf(t, tarEntry{name: "../x", body: "x"}), 400,
			bad(`build context: entry "../x" is outside the context: names must be relative and stay below it`)},
		{"entry a/../../x", "", tarOf(t, tarEntry{name: "a/../../x", body: "x"}), 400,
			bad(`build context: entry "a/../../x" is outside the context: names must be relative and stay below it`)},
		{"absolute entry", "", tarOf(t, tarEntry{name: "/etc/x", body: "x"}), 400,
			bad(`build context: entry "/etc/x" is outside the context: names must be relative and stay below it`)},
		{"entry below a symlink", "", tarOf(t, tarEntry{name: "etc", link: "/etc", typ: tar.TypeSymlink}, tarEntry{name: "etc/evil", body: "x"}), 400,
			bad(`build context: entry "etc/evil" is below the symbolic link "etc"`)},
		{"entry below a relative symlink", "", tarOf(t, tarEntry{name: "up", link: "..", typ: tar.TypeSymlink}, tarEntry{name: "up/x/y", body: "x"}), 400,
			bad(`build context: entry "up/x/y" is below the symbolic link "up"`)},
		{"hard link outside", "", tarOf(t, tarEntry{name: "h", link: "../../etc/passwd", typ: tar.TypeLink}), 400,
			bad(`build context: entry "../../etc/passwd" is outside the context: names must be relative and stay below it`)},
		{"too large", "", tarOf(t, tarEntry{name: "Dockerfile", body: strings.Repeat("x", 8<<10)}), 413,
			rest.Error{Code: "too_large", Message: "build context is larger than 8 KiB: leave files out with .dockerignore"}},
		{"not a tar", "", "hello", 400, bad("build context is not a tar archive: unexpected EOF")},
		{"gzip, not a tar", "", gz.String(), 400, bad("build context is not a tar archive: unexpected EOF")},
		{"builder fails before output", "?target=early", ok, 400, bad("Dockerfile:3: unknown instruction FROBNICATE")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.do("POST", "/v1/images/build"+tt.query, admin, tt.body)
			checkAPIError(t, status, body, tt.wantStatus, tt.want)
		})
	}

	// Once output has gone out, a failure is the stream's last line.
	status, body := e.do("POST", "/v1/images/build", admin, ok)
	want := `{"log":"#1 RUN exit 7"}
{"error":{"code":"failed_precondition","message":"Dockerfile:2: RUN exit 7: exit code 7"}}
`
	if status != 200 || string(body) != want {
		t.Fatalf("failure after output: %d\n%s\nwant:\n%s", status, body, want)
	}
}

// TestBuildCanceledByClient: a client that leaves cancels the build.
func TestBuildCanceledByClient(t *testing.T) {
	t.Parallel()
	canceled := make(chan error, 1)
	b := &fakeBuilder{build: func(ctx context.Context, req BuildRequest) (BuildResult, error) {
		fmt.Fprintln(req.Log, "#1 RUN sleep 1000")
		<-ctx.Done()
		canceled <- ctx.Err()
		return BuildResult{}, ctx.Err()
	}}
	e, admin := newBuildEnv(t, b)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	log := &cancelOnWrite{cancel: cancel}
	_, err := e.sdkClient(admin).Images().Build(ctx, den.BuildOptions{ContextDir: dir, Log: log})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Build = %v, want canceled", err)
	}
	select {
	case err := <-canceled:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("builder's context ended with %v", err)
		}
	case <-testCtx(t).Done():
		t.Fatal("the build went on after the client left")
	}
}

// cancelOnWrite cancels a context at the first write.
type cancelOnWrite struct{ cancel context.CancelFunc }

func (c *cancelOnWrite) Write(p []byte) (int, error) {
	c.cancel()
	return len(p), nil
}

// TestUnpackBuildContext checks what an unpacked context holds for
// archives that replace entries or come compressed.
func TestUnpackBuildContext(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("original"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		entries []tarEntry
		gzip    bool
		want    []string
	}{
		{"a file replaces a symlink instead of writing through it", []tarEntry{
			{name: "f", link: victim, typ: tar.TypeSymlink},
			{name: "f", body: "new"},
		}, false, []string{"f"}},
		{"a symlink replaces a directory", []tarEntry{
			{name: "d/"}, {name: "d/x", body: "x"},
			{name: "d", link: "elsewhere", typ: tar.TypeSymlink},
		}, false, []string{"d -> elsewhere"}},
		{"gzip-compressed", []tarEntry{{name: "a/b/c", body: "c"}}, true, []string{"a/", "a/b/", "a/b/c"}},
		{"devices are skipped", []tarEntry{{name: "null", typ: tar.TypeChar}, {name: "x", body: "x"}}, false, []string{"x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := tarOf(t, tt.entries...)
			if tt.gzip {
				var buf bytes.Buffer
				zw := gzip.NewWriter(&buf)
				io.WriteString(zw, body)
				zw.Close()
				body = buf.String()
			}
			dir := t.TempDir()
			if err := unpackBuildContext(strings.NewReader(body), dir, 1<<20); err != nil {
				t.Fatal(err)
			}
			got, err := listTree(dir)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Fatalf("context (-want +got):\n%s", diff)
			}
			if b, _ := os.ReadFile(victim); string(b) != "original" {
				t.Fatalf("a file outside the context was written: %q", b)
			}
		})
	}
}

// TestBuildContextKeepsModes: permissions and mtimes survive unpacking.
func TestBuildContextKeepsModes(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	tw.WriteHeader(&tar.Header{Name: "run.sh", Mode: 0o755, Size: 2, Typeflag: tar.TypeReg, ModTime: mtime})
	io.WriteString(tw, "#!")
	tw.Close()
	dir := t.TempDir()
	if err := unpackBuildContext(&buf, dir, 1<<20); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "run.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 || !fi.ModTime().Equal(mtime) {
		t.Fatalf("run.sh: mode %v, mtime %v; want 0755, %v", fi.Mode(), fi.ModTime(), mtime)
	}
}
