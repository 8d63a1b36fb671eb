package cli

import (
	"archive/tar"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/api/rest"
	den "github.com/denhq/den/sdk/go"
	"github.com/denhq/den/sdk/go/dentest"
)

// newImageEnv starts a fake server whose registry at down.test refuses
// connections and at auth.test wants credentials.
func newImageEnv(t *testing.T) *dentest.Server {
	t.Helper()
	isolate(t)
	srv := dentest.NewServer(dentest.Config{APIKey: testKey, RegistryError: func(ref string) *rest.Error {
		switch {
		case strings.HasPrefix(ref, "down.test/"):
			return &rest.Error{Code: "unavailable", Message: `pull image ` + ref + `: Get "https://down.test/v2/": dial tcp 127.0.0.1:443: connect: connection refused`}
		case strings.HasPrefix(ref, "auth.test/"):
			return &rest.Error{Code: "unauthenticated", Message: "GET https://auth.test/v2/x/manifests/1: UNAUTHORIZED: authentication required"}
		}
		return nil
	}})
	t.Cleanup(srv.Close)
	return srv
}

func TestImagePushPullCommands(t *testing.T) {
	srv := newImageEnv(t)
	r := cli(t, srv.URL, "", "image", "push", "base", "registry.test/team/base:v1")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "sha256:") {
		t.Fatalf("push: %+v", r)
	}
	// Not a terminal: a line per phase of each layer.
	if r.stderr != "sha256:base   uploading\n" {
		t.Fatalf("push progress: %q", r.stderr)
	}
	r = cli(t, srv.URL, "", "image", "pull", "registry.test/team/base:v1")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "registry.test/team/base:v1 sha256:") {
		t.Fatalf("pull: %+v", r)
	}
	if want := "registry.test/team/base:v1  resolving\nsha256:base   downloading\nsha256:base   unpacking\n"; r.stderr != want {
		t.Fatalf("pull progress:\n%s\nwant a line per phase:\n%s", r.stderr, want)
	}
	var img rest.Image
	out := ok(t, srv.URL, "", "image", "pull", "--json", "registry.test/team/base:v1")
	if err := json.Unmarshal([]byte(out), &img); err != nil || img.Name != "registry.test/team/base:v1" {
		t.Fatalf("pull --json = %q (%v)", out, err)
	}
	r = cli(t, srv.URL, "", "image", "push", "--json", "base", "registry.test/team/base:v2")
	if r.code != 0 || r.stderr != "" || !strings.HasPrefix(r.stdout, "{\n  \"digest\": \"sha256:") {
		t.Fatalf("push --json: %+v", r)
	}
	// DEST defaults to NAME.
	ok(t, srv.URL, "", "image", "tag", "base", "registry.test/team/app:1")
	ok(t, srv.URL, "", "image", "push", "registry.test/team/app:1")
	if diff := cmp.Diff([]string{"registry.test/team/app:1", "registry.test/team/base:v1", "registry.test/team/base:v2"}, srv.Registry()); diff != "" {
		t.Fatalf("registry (-want +got):\n%s", diff)
	}
}

func TestImageRegistryErrorsSayWhatToDo(t *testing.T) {
	srv := newImageEnv(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"refused", []string{"image", "pull", "down.test/x:1"},
			"den image pull: down.test/x:1: connection refused — is the registry running? use --insecure for plain-HTTP registries\n"},
		{"refused with --insecure", []string{"image", "pull", "--insecure", "down.test/x:1"},
			"den image pull: down.test/x:1: connection refused — is the registry running?\n"},
		{"push refused", []string{"image", "push", "base", "down.test/x:1"},
			"den image push: down.test/x:1: connection refused — is the registry running? use --insecure for plain-HTTP registries\n"},
		{"unauthorized", []string{"image", "pull", "auth.test/x:1"},
			"den image pull: auth.test/x:1: unauthorized — log in with --username and --password-stdin, and check the repository name\n"},
		{"missing manifest", []string{"image", "pull", "registry.test/nosuch:1"},
			"den image pull: registry.test/nosuch:1: no such image in the registry — check the repository name and tag\n"},
		{"missing local image", []string{"image", "push", "nosuch", "registry.test/x:1"},
			"den: get image: image \"nosuch\" not found (not_found)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, srv.URL, "", tc.args...)
			if r.code != 1 || r.stderr[strings.LastIndex(strings.TrimSuffix(r.stderr, "\n"), "\n")+1:] != tc.want {
				t.Fatalf("exit %d, stderr %q; want 1 ending %q", r.code, r.stderr, tc.want)
			}
		})
	}
}

func TestImagePasswordStdin(t *testing.T) {
	srv := newImageEnv(t)
	r := cli(t, srv.URL, "s3cret\n", "image", "pull", "--password-stdin", "registry.test/x:1")
	if r.code != 2 || r.stderr != "den: --password-stdin needs --username\nRun 'den image pull --help' for usage.\n" {
		t.Fatalf("--password-stdin without --username: %+v", r)
	}
	r = cli(t, srv.URL, "s3cret\n", "image", "pull", "-u", "me", "--password-stdin", "auth.test/x:1")
	want := "den image pull: auth.test/x:1: unauthorized — check --username, the password and the repository name\n"
	if r.code != 1 || !strings.HasSuffix(r.stderr, want) {
		t.Fatalf("pull with credentials: %+v", r)
	}
}

func TestImageBuildCommand(t *testing.T) {
	srv := newImageEnv(t)
	dir := t.TempDir()
	files := map[string]string{"Dockerfile": "FROM base\nRUN make\n", "Dockerfile.dev": "FROM base\n", "a.txt": "a", ".dockerignore": "a.txt\n"}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("FROM_ENV", "e")
	r := cli(t, srv.URL, "", "image", "build", "-t", "app:1", "-t", "app:latest", "--build-arg", "A=1", "--build-arg", "FROM_ENV",
		"--target", "final", "--no-cache", "--pull", dir)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("build: %+v", r)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 3 || lines[0] != "#1 FROM base" || lines[1] != "#2 RUN make" || !strings.HasPrefix(lines[2], "sha256:") {
		t.Fatalf("build stdout: log then the image ID, got:\n%s", r.stdout)
	}
	want := dentest.Build{
		Files: []string{".dockerignore", "Dockerfile", "Dockerfile.dev"}, Dockerfile: "Dockerfile", Content: files["Dockerfile"],
		Tags: []string{"app:1", "app:latest"}, BuildArgs: []string{"A=1", "FROM_ENV=e"}, Target: "final", NoCache: true, Pull: true,
	}
	got := srv.Builds()[0]
	slices.Sort(got.BuildArgs)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("build (-want +got):\n%s", diff)
	}

	// -f is relative to the current directory; --json prints the result
	// and sends the log to stderr.
	t.Chdir(dir)
	r = cli(t, srv.URL, "", "image", "build", "--json", "-f", "Dockerfile.dev", ".")
	var res rest.BuildResult
	if r.code != 0 || r.stderr != "#1 FROM base\n" || json.Unmarshal([]byte(r.stdout), &res) != nil || res.Steps != 1 {
		t.Fatalf("build --json: %+v", r)
	}
	if b := srv.Builds()[1]; b.Dockerfile != "Dockerfile.dev" {
		t.Fatalf("-f Dockerfile.dev sent dockerfile=%q", b.Dockerfile)
	}

	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM base\nRUN false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = cli(t, srv.URL, "", "image", "build", dir)
	if r.code != 1 || r.stdout != "#1 FROM base\n#2 RUN false\n" ||
		r.stderr != "den: Dockerfile:2: RUN false: exit code 1 (failed_precondition)\n" {
		t.Fatalf("failing build: %+v", r)
	}
}

func TestImageCommandUsageErrors(t *testing.T) {
	isolate(t)
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"build without context", []string{"image", "build"}, "den: den image build takes one build CONTEXT directory, got 0 argument(s)\nRun 'den image build --help' for usage.\n"},
		{"build context is a file", []string{"image", "build", file}, "den: build context \"" + file + "\" is not a directory\nRun 'den image build --help' for usage.\n"},
		{"bad build arg", []string{"image", "build", "--build-arg", "NOT_SET_ANYWHERE_X", "."}, "den: invalid --build-arg \"NOT_SET_ANYWHERE_X\": want KEY=VALUE, or KEY set in the environment\nRun 'den image build --help' for usage.\n"},
		{"missing -f", []string{"image", "build", "-f", "/nonexistent/Dockerfile", "."}, "den: invalid -f \"/nonexistent/Dockerfile\": stat /nonexistent/Dockerfile: no such file or directory\nRun 'den image build --help' for usage.\n"},
		{"pull two refs", []string{"image", "pull", "a", "b"}, "den: den image pull takes one image reference REF, got 2 argument(s)\nRun 'den image pull --help' for usage.\n"},
		{"push nothing", []string{"image", "push"}, "den: den image push takes an image NAME and optionally a DEST reference, got 0 argument(s)\nRun 'den image push --help' for usage.\n"},
		{"tag one arg", []string{"image", "tag", "a"}, "den: den image tag takes the image SRC and its new NAME, got 1 argument(s)\nRun 'den image tag --help' for usage.\n"},
		{"export bad format", []string{"image", "export", "--format", "zip", "a"}, "den: invalid --format \"zip\": want docker-archive or oci\nRun 'den image export --help' for usage.\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, "http://127.0.0.1:1", "", tc.args...)
			if r.code != 2 || r.stderr != tc.want {
				t.Fatalf("exit %d, stderr %q; want 2, %q", r.code, r.stderr, tc.want)
			}
		})
	}
}

func TestImageTagInspectExportPruneCommands(t *testing.T) {
	srv := newImageEnv(t)
	if out := ok(t, srv.URL, "", "image", "tag", "base", "base:v2"); out != "base:v2 sha256:base\n" {
		t.Fatalf("tag printed %q", out)
	}
	var d rest.ImageDetails
	if err := json.Unmarshal([]byte(ok(t, srv.URL, "", "image", "inspect", "base:v2")), &d); err != nil || d.Name != "base:v2" || len(d.Layers) != 1 {
		t.Fatalf("inspect = %+v, %v", d, err)
	}
	r := cli(t, srv.URL, "", "image", "inspect", "nosuch")
	if r.code != 1 || r.stderr != "den: image nosuch not found (not_found)\n" {
		t.Fatalf("inspect nosuch: %+v", r)
	}

	out := filepath.Join(t.TempDir(), "base.tar")
	ok(t, srv.URL, "", "image", "export", "base:v2", "-o", out, "--format", "oci")
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if hdr, err := tar.NewReader(f).Next(); err != nil || hdr.Name != "oci-layout" {
		t.Fatalf("exported tar: %+v, %v", hdr, err)
	}
	stdout := ok(t, srv.URL, "", "image", "export", "base:v2") // not a terminal
	if hdr, err := tar.NewReader(strings.NewReader(stdout)).Next(); err != nil || hdr.Name != "manifest.json" {
		t.Fatalf("tar on stdout: %+v, %v", hdr, err)
	}
	missing := filepath.Join(t.TempDir(), "missing.tar")
	r = cli(t, srv.URL, "", "image", "export", "nosuch", "-o", missing)
	if r.code != 1 || r.stderr != "den: image nosuch not found (not_found)\n" {
		t.Fatalf("export nosuch: %+v", r)
	}
	if entries, _ := os.ReadDir(filepath.Dir(missing)); len(entries) != 0 {
		t.Fatalf("a failed export left %v", entries)
	}

	if out := ok(t, srv.URL, "", "image", "prune"); out != "deleted 0 layers and 0 blobs, 0B freed\n" {
		t.Fatalf("prune printed %q", out)
	}
	r = cli(t, srv.URL, "", "image", "rm", "base:v2", "base")
	if r.code != 0 || r.stdout != "base:v2\nbase\n" {
		t.Fatalf("rm of two images: %+v", r)
	}
}

func TestProgressLines(t *testing.T) {
	layer := "sha256:0123456789abcdef0123456789abcdef"
	evs := []den.Progress{
		{Phase: rest.PhaseResolving, Detail: "reg.test/x:1"},
		{Phase: rest.PhaseDownloading, Detail: layer, Current: 0, Total: 2 << 20},
		{Phase: rest.PhaseDownloading, Detail: layer, Current: 1 << 20, Total: 2 << 20},
		{Phase: rest.PhaseExists, Detail: "sha256:fedcba9876543210fedcba9876543210"},
		{Phase: rest.PhaseUnpacking, Detail: layer, Current: 2 << 20, Total: 2 << 20},
	}
	var plain strings.Builder
	p := newLayerProgress(&plain, false)
	for _, ev := range evs {
		p.report(ev)
	}
	want := "reg.test/x:1  resolving\n" +
		"0123456789ab  downloading  0B/2.0MiB\n" +
		"fedcba987654  exists\n" +
		"0123456789ab  unpacking  2.0MiB/2.0MiB\n"
	if plain.String() != want {
		t.Fatalf("plain progress:\n%s\nwant:\n%s", plain.String(), want)
	}
	var tty strings.Builder
	p = newLayerProgress(&tty, true)
	for _, ev := range evs[:3] {
		p.report(ev)
	}
	want = "\r\033[Kreg.test/x:1  resolving\n" +
		"\033[1A\r\033[Kreg.test/x:1  resolving\n\r\033[K0123456789ab  downloading  0B/2.0MiB\n" +
		"\033[2A\r\033[Kreg.test/x:1  resolving\n\r\033[K0123456789ab  downloading  1.0MiB/2.0MiB\n"
	if tty.String() != want {
		t.Fatalf("terminal progress:\n%q\nwant:\n%q", tty.String(), want)
	}
}
