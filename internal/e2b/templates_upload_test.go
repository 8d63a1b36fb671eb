package e2b

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/denhq/den/internal/errdefs"
)

// TestTemplateUploadLinks checks the upload link's authentication and
// limits over HTTP.
func TestTemplateUploadLinks(t *testing.T) {
	e := newTemplateEnv(t, func(c *TemplatesConfig) { c.MaxUploadBytes = 4096 })
	resp := e.requestBuild(e.keyA, `{"name":"up"}`)
	id, hash := resp.TemplateID, sha("up")
	var link templateBuildFileUpload
	decode(t, e.mustCall("GET", "/templates/"+id+"/files/"+hash, e.keyA, "", 201).body, &link)
	ok := makeTar(t, false, file("a.txt", "a"))
	big := makeTar(t, true, file("zeros", strings.Repeat("\x00", 20000)))
	tests := []struct {
		name, url string
		body      []byte
		skew      int64
		status    int
		msg       string
	}{
		{"bad signature", strings.Replace(link.URL, "signature=", "signature=x", 1), ok, 0, 403, "the upload link's signature is invalid"},
		{"no signature", strings.Split(link.URL, "?")[0], ok, 0, 403, "signature is invalid"},
		{"other hash", strings.Replace(link.URL, hash, sha("other"), 1), ok, 0, 403, "signature is invalid"},
		{"later expiry", strings.Replace(link.URL, "expires=", "expires=9", 1), ok, 0, 403, "signature is invalid"},
		{"expired", link.URL, ok, 2 * 3600, 403, "the upload link expired"},
		{"too large", link.URL, bytes.Repeat([]byte("x"), 5000), 0, 413, "the upload is 5000 bytes, more than the limit of 4096 bytes"},
		{"unpacks too large", link.URL, big, 0, 413, "the upload unpacks to more than 16384 bytes"},
		{"not a tar", link.URL, []byte("this is not an archive"), 0, 400, "the upload is not a valid tar archive"},
		{"bad gzip", link.URL, []byte{0x1f, 0x8b, 1, 2, 3}, 0, 400, "the upload is not a valid gzip stream"},
		{"escape", link.URL, makeTar(t, false, file("../evil", "x")), 0, 400, `archive entry "../evil": the name must be a relative path inside the upload`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.skew.Store(tt.skew)
			defer e.skew.Store(0)
			checkError(t, e.put(tt.url, tt.body), tt.status, tt.msg)
		})
	}
	t.Run("too large without a length", func(t *testing.T) {
		body := makeTar(t, false, file("big", strings.Repeat("x", 5000)))
		req, err := http.NewRequest("PUT", link.URL, struct{ io.Reader }{bytes.NewReader(body)})
		if err != nil {
			t.Fatal(err)
		}
		r, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		checkError(t, response{status: r.StatusCode, body: b}, 413, "the upload is larger than the limit of 4096 bytes")
	})
	decode(t, e.mustCall("GET", "/templates/"+id+"/files/"+hash, e.keyA, "", 201).body, &link)
	if link.Present {
		t.Fatal("a refused upload made the files present")
	}
	if _, err := os.Stat(filepath.Join(e.dir, "files", id, "evil")); !os.IsNotExist(err) {
		t.Errorf("the escaping entry was written: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(e.dir, "files", id)); len(entries) != 0 {
		t.Errorf("refused uploads left %v", entries)
	}
	if r := e.put(link.URL, ok); r.status != 204 {
		t.Fatalf("upload: HTTP %d %s", r.status, r.body)
	}
	if r := e.put(link.URL, ok); r.status != 204 {
		t.Errorf("second upload of the same hash: HTTP %d %s", r.status, r.body)
	}
	e.mustCall("DELETE", "/templates/"+id, e.keyA, "", 204)
	checkError(t, e.put(link.URL, ok), 404, "template '"+id+"' not found")
}

// TestUnpackUpload checks what an upload unpacks to, and that entries that
// would write outside the upload are refused.
func TestUnpackUpload(t *testing.T) {
	outside := t.TempDir()
	tests := []struct {
		name    string
		gz      bool
		entries []tarEntry
		msg     string // "" for a success
		check   func(t *testing.T, dir string)
	}{
		{name: "files, dirs and links", gz: true, entries: []tarEntry{
			dirEntry("./"), dirEntry("d/"), file("d/f.sh", "#!/bin/sh\n"), file("implicit/parent/g", "g"),
			symlink("d/abs", "/etc/passwd"), {tar.Header{Name: "d/hard", Typeflag: tar.TypeLink, Linkname: "d/f.sh"}, ""},
			file("replaced", "old"), file("replaced", "new"),
		}, check: func(t *testing.T, dir string) {
			if b, err := os.ReadFile(filepath.Join(dir, "d/hard")); err != nil || string(b) != "#!/bin/sh\n" {
				t.Errorf("hard link: %q %v", b, err)
			}
			if l, err := os.Readlink(filepath.Join(dir, "d/abs")); err != nil || l != "/etc/passwd" {
				t.Errorf("symlink: %q %v (a link may point anywhere; it is content)", l, err)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "replaced")); string(b) != "new" {
				t.Errorf("a later entry did not replace an earlier one: %q", b)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "implicit/parent/g")); string(b) != "g" {
				t.Errorf("file under missing parents: %q", b)
			}
		}},
		{name: "modes", entries: []tarEntry{{tar.Header{Name: "x", Typeflag: tar.TypeReg, Mode: 0o4755}, ""}}, check: func(t *testing.T, dir string) {
			if fi, err := os.Stat(filepath.Join(dir, "x")); err != nil || fi.Mode() != 0o755 {
				t.Errorf("mode: %v %v (permission bits only)", fi.Mode(), err)
			}
		}},
		{name: "dot dot", entries: []tarEntry{file("a/../../x", "x")}, msg: `archive entry "a/../../x": the name must be a relative path`},
		{name: "absolute", entries: []tarEntry{file("/etc/x", "x")}, msg: `archive entry "/etc/x": the name must be a relative path`},
		{name: "through a symlink", entries: []tarEntry{symlink("out", outside), file("out/pwned", "x")}, msg: `archive entry "out/pwned": its parent "out" is a symbolic link`},
		{name: "through a relative symlink", entries: []tarEntry{symlink("up", ".."), file("up/pwned", "x")}, msg: `its parent "up" is a symbolic link`},
		{name: "dir through a symlink", entries: []tarEntry{symlink("out", outside), dirEntry("out/sub/")}, msg: `archive entry "out/sub": its parent "out" is a symbolic link`},
		{name: "hard link outside", entries: []tarEntry{{tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}, ""}}, msg: `hard link target "../../etc/passwd" is not inside the upload`},
		{name: "hard link through a symlink", entries: []tarEntry{symlink("out", outside), {tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "out/secret"}, ""}}, msg: `its parent "out" is a symbolic link`},
		{name: "device", entries: []tarEntry{{tar.Header{Name: "dev", Typeflag: tar.TypeChar}, ""}}, msg: `archive entry "dev": type "3" is not supported`},
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			err := unpackUpload(context.Background(), bytes.NewReader(makeTar(t, tt.gz, tt.entries...)), dir, 1<<20)
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("unpack: %v", err)
				}
				tt.check(t, dir)
				return
			}
			if !errdefs.Is(err, errdefs.InvalidArgument) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v (%s), want invalid_argument with %q", err, errdefs.KindOf(err), tt.msg)
			}
		})
	}
	entries, err := os.ReadDir(outside)
	if err != nil || len(entries) != 1 {
		t.Errorf("the directory outside the uploads holds %v (%v), want only secret", entries, err)
	}
}

// TestUnpackUploadLimit checks the unpacked size limit.
func TestUnpackUploadLimit(t *testing.T) {
	err := unpackUpload(context.Background(), bytes.NewReader(makeTar(t, true, file("a", "12345"), file("b", "67890"))), t.TempDir(), 9)
	var tooBig *tooLargeError
	if !errors.As(err, &tooBig) || err.Error() != "the upload unpacks to more than 9 bytes" {
		t.Fatalf("got %v, want the unpacked size limit", err)
	}
}
