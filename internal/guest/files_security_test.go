package guest

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFilesHostileNames sends /files names no file can have, or that
// cannot be resolved: each is a 400 invalid_argument naming the problem,
// never a 500, for a download and for an upload, and an upload leaves
// nothing behind.
func TestFilesHostileNames(t *testing.T) {
	e := newEnv(t)
	if err := os.Symlink("loop", filepath.Join(e.home, "loop")); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("a", 300)         // one name over NAME_MAX
	deep := strings.Repeat("d/", 5000) + "f" // a path over PATH_MAX
	tests := []struct {
		name, path, wantMsg string
	}{
		{"NUL byte", "x\x00/../../etc/passwd", "contains a NUL byte"},
		{"name too long", long, "file name too long"},
		{"path too long", deep, "file name too long"},
		{"symlink loop", "loop/x", "too many levels of symbolic links"},
	}
	for _, tt := range tests {
		for _, method := range []string{"GET", "POST"} {
			t.Run(tt.name+" "+method, func(t *testing.T) {
				req, _ := http.NewRequest(method, e.srv.URL+"/files?path="+url.QueryEscape(tt.path), strings.NewReader("data"))
				req.Header.Set("Content-Type", "application/octet-stream")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				got := decodeJSON[apiError](t, resp)
				if resp.StatusCode != 400 || got.Code != "invalid_argument" || !strings.Contains(got.Message, tt.wantMsg) {
					t.Errorf("got %d %+v, want 400 invalid_argument with %q", resp.StatusCode, got, tt.wantMsg)
				}
			})
		}
	}
	ents, err := os.ReadDir(e.home)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ent := range ents {
		names = append(names, ent.Name())
	}
	if len(names) != 1 || names[0] != "loop" {
		t.Errorf("home holds %v after the refused uploads, want only [loop]", names)
	}
}
