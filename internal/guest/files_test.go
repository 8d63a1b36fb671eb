package guest

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/internal/errdefs"
)

// uploadRaw posts body to pathQuery as application/octet-stream, gzipped
// when encoding is "gzip".
func uploadRaw(t *testing.T, e *env, pathQuery, body, encoding string) *http.Response {
	t.Helper()
	var r io.Reader = strings.NewReader(body)
	if encoding == "gzip" {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write([]byte(body))
		zw.Close()
		r = &buf
	}
	req, err := http.NewRequest("POST", e.srv.URL+pathQuery, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// uploadMultipart posts files (name -> content) as "file" parts whose
// filename is the name.
func uploadMultipart(t *testing.T, e *env, query string, names []string, contents []io.Reader) *http.Response {
	t.Helper()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		for i, name := range names {
			h := textproto.MIMEHeader{}
			h.Set("Content-Disposition", `form-data; name="file"; filename="`+name+`"`)
			h.Set("Content-Type", "application/octet-stream")
			part, err := mw.CreatePart(h)
			if err == nil {
				_, err = io.Copy(part, contents[i])
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	resp, err := http.Post(e.srv.URL+"/files"+query, mw.FormDataContentType(), pr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func decodeJSON[T any](t *testing.T, resp *http.Response) T {
	t.Helper()
	var v T
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("decode %d response: %v", resp.StatusCode, err)
	}
	return v
}

func download(t *testing.T, e *env, path string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(e.srv.URL + "/files?path=" + url.QueryEscape(path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestUploadDownload(t *testing.T) {
	e := newEnv(t)
	t.Run("multipart, filenames are paths", func(t *testing.T) {
		names := []string{"a/b/one.txt", e.home + "/two.txt"}
		resp := uploadMultipart(t, e, "", names, []io.Reader{strings.NewReader("one"), strings.NewReader("two")})
		got := decodeJSON[[]uploadedFile](t, resp)
		want := []uploadedFile{
			{Path: e.home + "/a/b/one.txt", Name: "one.txt", Type: "file"},
			{Path: e.home + "/two.txt", Name: "two.txt", Type: "file"},
		}
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("response (-want +got):\n%s", diff)
		}
		for i, content := range []string{"one", "two"} {
			if _, body := download(t, e, want[i].Path); body != content {
				t.Errorf("download %s = %q, want %q", want[i].Path, body, content)
			}
		}
	})
	t.Run("octet-stream with gzip, replaces and keeps mode", func(t *testing.T) {
		path := e.home + "/script.sh"
		writeFile(t, path, "old")
		os.Chmod(path, 0o750)
		resp := uploadRaw(t, e, "/files?path="+url.QueryEscape("~/script.sh"), "new content", "gzip")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		dl, body := download(t, e, path)
		if body != "new content" || dl.Header.Get("Content-Type") != "application/octet-stream" {
			t.Errorf("download = %q (%s)", body, dl.Header.Get("Content-Type"))
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o750 {
			t.Errorf("mode %v, want 0750", fi.Mode().Perm())
		}
	})
	t.Run("50MB round trip", func(t *testing.T) {
		const size = 50 << 20
		src := func() io.Reader { return io.LimitReader(rand.NewChaCha8([32]byte{7}), size) }
		want := sha256.New()
		io.Copy(want, src())
		resp := uploadMultipart(t, e, "?path=big.bin", []string{"ignored"}, []io.Reader{src()})
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		get, err := http.Get(e.srv.URL + "/files?path=big.bin")
		if err != nil {
			t.Fatal(err)
		}
		defer get.Body.Close()
		got := sha256.New()
		n, _ := io.Copy(got, get.Body)
		if n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
			t.Errorf("downloaded %d bytes sha256 %s, want %d bytes %s", n, hex.EncodeToString(got.Sum(nil)), size, hex.EncodeToString(want.Sum(nil)))
		}
	})
}

// failingReader yields some bytes, then an error.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("client gave up")
	}
	k := min(len(p), f.n)
	f.n -= k
	return k, nil
}

func TestFailedUploadKeepsOldFile(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(e.home, "keep.txt")
	writeFile(t, path, "good")
	req, _ := http.NewRequest("POST", e.srv.URL+"/files?path=keep.txt", &failingReader{n: 1 << 20})
	req.Header.Set("Content-Type", "application/octet-stream")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("upload succeeded with status %d", resp.StatusCode)
	}
	waitFor(t, "temporary file to be removed", func() bool {
		ents, _ := os.ReadDir(e.home)
		return len(ents) == 1
	})
	if b, _ := os.ReadFile(path); string(b) != "good" {
		t.Errorf("file = %q after a failed upload, want %q", b, "good")
	}
}

func TestFilesErrors(t *testing.T) {
	e := newEnv(t)
	if err := os.Mkdir(e.home+"/dir", 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		method     string
		query      string
		wantStatus int
		wantCode   string
	}{
		{"download missing", "GET", "?path=missing.txt", 404, "not_found"},
		{"download directory", "GET", "?path=dir", 400, "invalid_argument"},
		{"download unknown user", "GET", "?path=x&username=ghost", 401, "unauthenticated"},
		{"download no path", "GET", "", 400, "invalid_argument"},
		{"upload onto directory", "POST", "?path=dir", 400, "invalid_argument"},
		{"upload no path", "POST", "", 400, "invalid_argument"},
		{"upload under a file", "POST", "?path=" + url.QueryEscape(e.home+"/f/x"), 400, "invalid_argument"},
	}
	writeFile(t, e.home+"/f", "file")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, e.srv.URL+"/files"+tt.query, strings.NewReader("data"))
			req.Header.Set("Content-Type", "application/octet-stream")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got := decodeJSON[apiError](t, resp)
			if resp.StatusCode != tt.wantStatus || got.Code != tt.wantCode || got.Message == "" {
				t.Errorf("got %d %+v, want %d %s", resp.StatusCode, got, tt.wantStatus, tt.wantCode)
			}
		})
	}
}

func TestStorageErrorsAre507(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT} {
		err := classifyFS(&os.PathError{Op: "write", Path: "/x", Err: errno}, "write /x")
		if k := errdefs.KindOf(err); k != errdefs.InsufficientStorage || k.HTTPStatus() != 507 || k.Code() != "insufficient_storage" {
			t.Errorf("%v: kind %v (%d), want insufficient_storage (507)", errno, k, k.HTTPStatus())
		}
	}
}

func TestUploadToFullDisk(t *testing.T) {
	e := newEnv(t)
	dir := filepath.Join(e.home, "small")
	os.Mkdir(dir, 0o755)
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (%v); classification is covered by TestStorageErrorsAre507", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	resp := uploadRaw(t, e, "/files?path=small/big", strings.Repeat("x", 1<<20), "")
	got := decodeJSON[apiError](t, resp)
	if resp.StatusCode != 507 || got.Code != "insufficient_storage" {
		t.Errorf("got %d %+v, want 507 insufficient_storage", resp.StatusCode, got)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left %d entries behind", len(ents))
	}
}

func TestHealthAndEnvs(t *testing.T) {
	e := newEnv(t)
	resp, err := http.Get(e.srv.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Errorf("health status %d, want 204", resp.StatusCode)
	}
	resp, err = http.Get(e.srv.URL + "/envs")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := decodeJSON[map[string]string](t, resp)
	if got["DEN_BASE"] != "base" {
		t.Errorf("envs = %v, want DEN_BASE=base", got)
	}
}
