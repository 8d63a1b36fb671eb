package build

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// requireRoot skips t unless it runs as root: builds chown, make device
// nodes (whiteouts) and read trusted.* xattrs.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root (layers keep ownership, whiteouts are device nodes)")
	}
}

// harness is a Builder over a fake image store and a fake runner, with a
// build context directory and an image "base".
type harness struct {
	t      *testing.T
	images *fakeImages
	runner *fakeRunner
	b      *Builder
	ctxDir string
}

// baseLayer is the filesystem of the image "base".
var baseLayer = map[string]string{
	"etc/passwd":              "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
	"etc/group":               "root:x:0:\nstaff:x:50:\napp:x:1000:\n",
	"bin/":                    "",
	"tmp/|1777":               "",
	"home/app/|755|1000:1000": "",
	"existing/":               "",
}

var baseConfig = ImageConfig{Env: []string{"PATH=/usr/bin:/bin"}, Cmd: []string{"/bin/sh"}}

func newHarness(t *testing.T) *harness {
	t.Helper()
	requireRoot(t)
	h := &harness{t: t, images: newFakeImages(t), runner: &fakeRunner{}, ctxDir: t.TempDir()}
	h.images.addImage(t, "base", baseConfig, baseLayer)
	var err error
	h.b, err = New(Config{Images: h.images, Runner: h.runner,
		WorkDir: filepath.Join(t.TempDir(), "work"), CacheDir: filepath.Join(t.TempDir(), "cache")})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h
}

// files writes files into the build context (see writeSpec).
func (h *harness) files(spec map[string]string) {
	h.t.Helper()
	writeSpec(h.t, h.ctxDir, spec)
}

// build builds dockerfile with opts and returns the result and the log.
func (h *harness) build(dockerfile string, opts Options) (*Result, string, error) {
	h.t.Helper()
	var log bytes.Buffer
	opts.ContextDir = h.ctxDir
	opts.DockerfileContent = []byte(dockerfile)
	opts.Log = &log
	res, err := h.b.Build(context.Background(), opts)
	return res, normalizeLog(log.String()), err
}

// mustBuild is build that fails the test on an error.
func (h *harness) mustBuild(dockerfile string, opts Options) (*Result, string) {
	h.t.Helper()
	res, log, err := h.build(dockerfile, opts)
	if err != nil {
		h.t.Fatalf("Build: %v\nlog:\n%s", err, log)
	}
	return res, log
}

var durations = regexp.MustCompile(`DONE \d+\.\d+s`)

// normalizeLog removes the durations of the log.
func normalizeLog(s string) string { return durations.ReplaceAllString(s, "DONE") }

func mustParse(t *testing.T, dockerfile string) *Plan {
	t.Helper()
	p, err := ParseDockerfile("Dockerfile", []byte(dockerfile))
	if err != nil {
		t.Fatalf("ParseDockerfile: %v", err)
	}
	return p
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}
