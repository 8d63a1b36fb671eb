package build

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/zstd"

	"github.com/denhq/den/internal/errdefs"
)

var copyContext = map[string]string{
	"a.txt":         "A",
	"b.txt":         "B",
	"c.md":          "C",
	"dir/x":         "X",
	"dir/sub/y":     "Y",
	"link":          "->a.txt",
	"withlink/l":    "->../a.txt",
	"run.sh|755":    "#!",
	"outside":       "->../../../etc",
	"absolute/link": "->/a.txt",
}

func TestCopyDestinationRules(t *testing.T) {
	tests := []struct {
		name   string
		lines  string
		prefix string
		want   map[string]string
	}{
		{"file to file", "COPY a.txt /dst", "/dst", map[string]string{"/dst": "file 644 0:0 A"}},
		{"trailing slash makes a directory", "COPY a.txt /dst/", "/dst",
			map[string]string{"/dst": "dir 755 0:0", "/dst/a.txt": "file 644 0:0 A"}},
		{"into an existing directory", "COPY a.txt /existing", "/existing",
			map[string]string{"/existing": "dir 755 0:0", "/existing/a.txt": "file 644 0:0 A"}},
		{"relative to WORKDIR", "WORKDIR /w\nCOPY a.txt rel", "/w",
			map[string]string{"/w": "dir 755 0:0", "/w/rel": "file 644 0:0 A"}},
		{"dot is WORKDIR", "WORKDIR /w\nCOPY a.txt .", "/w",
			map[string]string{"/w": "dir 755 0:0", "/w/a.txt": "file 644 0:0 A"}},
		{"a directory copies its contents", "COPY dir /d", "/d", map[string]string{
			"/d": "dir 755 0:0", "/d/x": "file 644 0:0 X", "/d/sub": "dir 755 0:0", "/d/sub/y": "file 644 0:0 Y"}},
		{"several sources into a directory", "COPY a.txt b.txt /m/", "/m", map[string]string{
			"/m": "dir 755 0:0", "/m/a.txt": "file 644 0:0 A", "/m/b.txt": "file 644 0:0 B"}},
		{"glob", "COPY *.txt /g/", "/g", map[string]string{
			"/g": "dir 755 0:0", "/g/a.txt": "file 644 0:0 A", "/g/b.txt": "file 644 0:0 B"}},
		{"glob in a directory component", "COPY dir/*/y /gy/", "/gy",
			map[string]string{"/gy": "dir 755 0:0", "/gy/y": "file 644 0:0 Y"}},
		{"glob matching nothing", "COPY *.none /n/", "/n", map[string]string{}},
		{"a linked source is followed", "COPY link /l/", "/l",
			map[string]string{"/l": "dir 755 0:0", "/l/link": "file 644 0:0 A"}},
		{"links inside a directory are kept", "COPY withlink /wl", "/wl",
			map[string]string{"/wl": "dir 755 0:0", "/wl/l": "link ../a.txt"}},
		{"links resolve inside the context", "COPY absolute/link /abs", "/abs",
			map[string]string{"/abs": "file 644 0:0 A"}},
		{"modes are kept", "COPY run.sh /bin/", "/bin/run.sh", map[string]string{"/bin/run.sh": "file 755 0:0 #!"}},
		{"destination through a link of the image", "COPY a.txt /lib/", "/usr",
			map[string]string{"/usr": "dir 755 0:0", "/usr/lib": "dir 755 0:0", "/usr/lib/a.txt": "file 644 0:0 A"}},
		{"chown with a uid", "COPY --chown=42 a.txt /o", "/o", map[string]string{"/o": "file 644 42:42 A"}},
		{"chown with names", "COPY --chown=app:staff dir/sub /cd/", "/cd",
			map[string]string{"/cd": "dir 755 1000:50", "/cd/y": "file 644 1000:50 Y"}},
		{"chown with a user takes its group", "COPY --chown=app a.txt /ca", "/ca", map[string]string{"/ca": "file 644 1000:1000 A"}},
		{"chown with uid and group name", "COPY --chown=7:staff a.txt /cg", "/cg", map[string]string{"/cg": "file 644 7:50 A"}},
		{"chmod", "COPY --chmod=700 dir/sub /cm", "/cm", map[string]string{"/cm": "dir 700 0:0", "/cm/y": "file 700 0:0 Y"}},
		{"variables", "ENV D=/v\nCOPY a.txt ${D}/", "/v", map[string]string{"/v": "dir 755 0:0", "/v/a.txt": "file 644 0:0 A"}},
		{"from an image, keeping owners", "COPY --from=base /home /h", "/h",
			map[string]string{"/h": "dir 755 0:0", "/h/app": "dir 755 1000:1000"}},
		{"from a stage by index", "RUN echo hi > /hi\nFROM base\nCOPY --from=0 /hi /from0", "/from0",
			map[string]string{"/from0": "file 644 0:0 hi\n"}},
		{"from a stage, through its links", "RUN echo hi > /usr/lib/hi\nFROM base\nCOPY --from=0 /lib/hi /viaLink", "/viaLink",
			map[string]string{"/viaLink": "file 644 0:0 hi\n"}},
	}
	h := newHarness(t)
	h.images.addImage(t, "usrmerge", baseConfig, baseLayer, map[string]string{"lib": "->usr/lib", "usr/lib/": ""})
	h.files(copyContext)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.mustBuild("FROM usrmerge\n"+tt.lines+"\n", Options{})
			got := subset(tree(t, h.images, h.images.last(t).Layers), tt.prefix)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("tree under %s (-want +got):\n%s", tt.prefix, diff)
			}
		})
	}
}

func TestCopyErrors(t *testing.T) {
	tests := []struct {
		name, line, want string
		kind             errdefs.Kind
	}{
		{"missing source", "COPY nosuch /x",
			`Dockerfile:2: COPY nosuch /x: "nosuch": no such file or directory in the build context`, errdefs.InvalidArgument},
		{"source under a file", "COPY a.txt/x /x",
			`Dockerfile:2: COPY a.txt/x /x: "a.txt/x": no such file or directory in the build context`, errdefs.InvalidArgument},
		{"several sources to a file", "COPY a.txt b.txt /m",
			"Dockerfile:2: COPY a.txt b.txt /m: When using COPY with more than one source file, the destination must be a directory and end with a /", errdefs.InvalidArgument},
		{"glob of several to a file", "ADD *.txt /m",
			"Dockerfile:2: ADD *.txt /m: When using ADD with more than one source file, the destination must be a directory and end with a /", errdefs.InvalidArgument},
		{"unknown user", "COPY --chown=nobody a.txt /x",
			"Dockerfile:2: COPY --chown=nobody a.txt /x: unable to find user nobody: no matching entries in passwd file", errdefs.InvalidArgument},
		{"unknown group", "COPY --chown=app:wheel a.txt /x",
			"Dockerfile:2: COPY --chown=app:wheel a.txt /x: unable to find group wheel: no matching entries in group file", errdefs.InvalidArgument},
		{"bad chmod", "COPY --chmod=999 a.txt /x",
			`Dockerfile:2: COPY --chmod=999 a.txt /x: invalid chmod parameter "999": it should be an octal mode between 0 and 7777`, errdefs.InvalidArgument},
		{"destination under a file", "COPY a.txt /etc/passwd/x",
			"Dockerfile:2: COPY a.txt /etc/passwd/x: mkdir /etc/passwd: not a directory", errdefs.InvalidArgument},
		{"URL for COPY", "COPY http://example.com/x /x",
			"Dockerfile:2: COPY http://example.com/x /x: source can't be a URL for COPY", errdefs.InvalidArgument},
		{"checksum of a local file", "ADD --checksum=sha256:00 a.txt /x",
			"Dockerfile:2: ADD --checksum=sha256:00 a.txt /x: checksum can't be specified for non-HTTP sources", errdefs.InvalidArgument},
		{"from a later stage", "COPY --from=later a.txt /x\nFROM base AS later",
			`Dockerfile:2: COPY --from=later a.txt /x: cannot copy from stage "later", it needs to be defined before current stage "stage-0"`, errdefs.InvalidArgument},
		{"from a missing image", "COPY --from=nosuch:1 /a /x",
			`Dockerfile:2: COPY --from=nosuch:1 /a /x: image "nosuch:1" not found`, errdefs.NotFound},
		{"missing source in a stage", "COPY --from=0 /nosuch /x",
			`Dockerfile:2: COPY --from=0 /nosuch /x: "/nosuch": no such file or directory in stage 0`, errdefs.InvalidArgument},
	}
	h := newHarness(t)
	h.files(copyContext)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			df := "FROM base\n" + tt.line + "\n"
			if strings.Contains(tt.line, "--from=0") {
				df = "FROM base\nFROM base\n" + strings.TrimPrefix(df, "FROM base\n")
				tt.want = strings.Replace(tt.want, "Dockerfile:2:", "Dockerfile:3:", 1)
			}
			_, log, err := h.build(df, Options{})
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error: %v\nwant: %s\nlog:\n%s", err, tt.want, log)
			}
			if k := errdefs.KindOf(err); k != tt.kind {
				t.Errorf("kind %v, want %v", k, tt.kind)
			}
		})
	}
}

func TestDockerignore(t *testing.T) {
	h := newHarness(t)
	h.files(map[string]string{
		".dockerignore":                 "*.log\nsecret\n!keep.log\nnested/**/*.tmp\nopt\n!opt/ok\n",
		"build.Dockerfile.dockerignore": "a.txt\n",
		"a.txt":                         "A",
		"x.log":                         "log",
		"keep.log":                      "kept",
		"secret/s":                      "s",
		"nested/d/f.tmp":                "tmp",
		"nested/d/g":                    "g",
		"opt/ok":                        "ok",
		"opt/no":                        "no",
	})
	h.mustBuild("FROM base\nCOPY . /app\n", Options{})
	got := subset(tree(t, h.images, h.images.last(t).Layers), "/app")
	want := map[string]string{
		"/app":                               "dir 755 0:0",
		"/app/.dockerignore":                 "file 644 0:0 *.log\nsecret\n!keep.log\nnested/**/*.tmp\nopt\n!opt/ok\n",
		"/app/build.Dockerfile.dockerignore": "file 644 0:0 a.txt\n",
		"/app/a.txt":                         "file 644 0:0 A",
		"/app/keep.log":                      "file 644 0:0 kept",
		"/app/nested":                        "dir 755 0:0",
		"/app/nested/d":                      "dir 755 0:0",
		"/app/nested/d/g":                    "file 644 0:0 g",
		"/app/opt":                           "dir 755 0:0",
		"/app/opt/ok":                        "file 644 0:0 ok",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("COPY . with .dockerignore (-want +got):\n%s", diff)
	}
	_, _, err := h.build("FROM base\nCOPY secret/s /s\n", Options{})
	if want := `Dockerfile:2: COPY secret/s /s: "secret/s": no such file or directory in the build context`; err == nil || err.Error() != want {
		t.Errorf("copying an ignored file: %v, want %s", err, want)
	}
	// <Dockerfile>.dockerignore replaces .dockerignore.
	_, _, err = h.build("FROM base\nCOPY x.log a.txt /d/\n", Options{Dockerfile: "build.Dockerfile"})
	if want := `build.Dockerfile:2: COPY x.log a.txt /d/: "a.txt": no such file or directory in the build context`; err == nil || err.Error() != want {
		t.Errorf("with build.Dockerfile.dockerignore: %v, want %s", err, want)
	}
}

// tarOf returns a tar archive of a directory "pkg" with a file, a link to
// it and a hard link.
func tarOf(t *testing.T, extra ...tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	hdrs := append([]tar.Header{
		{Typeflag: tar.TypeDir, Name: "pkg/", Mode: 0o750, Uid: 7, Gid: 8, ModTime: mtime},
		{Typeflag: tar.TypeReg, Name: "pkg/f", Mode: 0o755, Uid: 7, Gid: 8, Size: 1, ModTime: mtime},
		{Typeflag: tar.TypeSymlink, Name: "pkg/l", Linkname: "f", ModTime: mtime},
		{Typeflag: tar.TypeLink, Name: "pkg/h", Linkname: "pkg/f", ModTime: mtime},
	}, extra...)
	for _, hdr := range hdrs {
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Size > 0 {
			tw.Write(bytes.Repeat([]byte("F"), int(hdr.Size)))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipOf(t *testing.T, data []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdOf(t *testing.T, data []byte) []byte {
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestAddUnpacksLocalArchives(t *testing.T) {
	h := newHarness(t)
	plain := tarOf(t)
	for name, data := range map[string][]byte{
		"t.tar": plain, "t.tar.gz": gzipOf(t, plain), "t.tar.zst": zstdOf(t, plain),
		"notar.gz": gzipOf(t, []byte("just text")),
		"evil.tar": tarOf(t, tar.Header{Typeflag: tar.TypeReg, Name: "../escape", Mode: 0o644}),
	} {
		if err := os.WriteFile(filepath.Join(h.ctxDir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pkg := func(dir string) map[string]string {
		return map[string]string{
			dir: "dir 755 0:0", dir + "/pkg": "dir 750 7:8", dir + "/pkg/f": "file 755 7:8 F",
			dir + "/pkg/l": "link f", dir + "/pkg/h": "file 755 7:8 F",
		}
	}
	tests := []struct {
		line, prefix string
		want         map[string]string
	}{
		{"ADD t.tar /x/", "/x", pkg("/x")},
		{"ADD t.tar.gz /y", "/y", pkg("/y")},
		{"ADD t.tar.zst /z", "/z", pkg("/z")},
		{"ADD notar.gz /n/", "/n", map[string]string{"/n": "dir 755 0:0", "/n/notar.gz": fmt.Sprintf("file 644 0:0 %s", gzipOf(t, []byte("just text")))}},
		{"COPY t.tar /c/", "/c/t.tar", map[string]string{"/c/t.tar": "file 644 0:0 " + string(plain)}},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			h.mustBuild("FROM base\n"+tt.line+"\n", Options{})
			got := subset(tree(t, h.images, h.images.last(t).Layers), tt.prefix)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	_, _, err := h.build("FROM base\nADD evil.tar /e/\n", Options{})
	if want := `Dockerfile:2: ADD evil.tar /e/: unpack "../escape": path traversal: "../escape" leaves the destination`; err == nil || err.Error() != want {
		t.Errorf("evil archive: %v, want %s", err, want)
	}
}

func TestAddDownloadsURLs(t *testing.T) {
	h := newHarness(t)
	modified := time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/files/data.tar.gz" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Last-Modified", modified.Format(http.TimeFormat))
		w.Write([]byte("payload"))
	}))
	defer srv.Close()
	h.b.http = srv.Client()
	url := srv.URL + "/files/data.tar.gz"
	sum := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte("payload")))

	h.mustBuild(fmt.Sprintf("FROM base\nADD --checksum=%s %s /dl/\nADD %s /named\n", sum, url, url), Options{})
	got := tree(t, h.images, h.images.last(t).Layers)
	want := map[string]string{"/dl": "dir 755 0:0", "/dl/data.tar.gz": "file 600 0:0 payload"}
	if diff := cmp.Diff(want, subset(got, "/dl")); diff != "" {
		t.Errorf("download into a directory (-want +got):\n%s", diff)
	}
	if got["/named"] != "file 600 0:0 payload" {
		t.Errorf("/named = %q", got["/named"])
	}
	fi, err := os.Stat(filepath.Join(h.images.layers[h.images.last(t).Layers[1]], "dl", "data.tar.gz"))
	if err != nil || !fi.ModTime().Equal(modified) {
		t.Errorf("mtime of the download: %v, %v; want %v", fi.ModTime(), err, modified)
	}

	bad := "sha256:" + strings.Repeat("0", 64)
	_, _, err = h.build(fmt.Sprintf("FROM base\nADD --checksum=%s %s /dl/\n", bad, url), Options{})
	instr := shorten(fmt.Sprintf("ADD --checksum=%s %s /dl/", bad, url))
	want2 := fmt.Sprintf("Dockerfile:2: %s: digest mismatch for %s: expected %s, got %s", instr, url, bad, sum)
	if err == nil || err.Error() != want2 {
		t.Errorf("wrong checksum: %v\nwant %s", err, want2)
	}
	_, _, err = h.build(fmt.Sprintf("FROM base\nADD %s/nosuch /x\n", srv.URL), Options{})
	want3 := fmt.Sprintf("Dockerfile:2: ADD %s/nosuch /x: download %s/nosuch: 404 Not Found", srv.URL, srv.URL)
	if err == nil || err.Error() != want3 {
		t.Errorf("missing URL: %v\nwant %s", err, want3)
	}
}
