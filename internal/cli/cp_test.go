package cli

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// lyingSandbox is a den whose sandbox answers every Stat "not found" (so
// nothing is a directory) and every file read with payload, as a
// sandbox whose agent has been replaced might.
func lyingSandbox(t *testing.T, payload string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/Stat"):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"code":"not_found","message":"no such file"}`)
		case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/envd/files"):
			io.WriteString(w, payload)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestCpDownloadStaysInTarget copies sandbox paths whose last element is
// "..", "." or "/" into a local directory from a sandbox that calls them
// files: den cp refuses, and nothing is written in the directory or
// beside it.
func TestCpDownloadStaysInTarget(t *testing.T) {
	isolate(t)
	url := lyingSandbox(t, "pwned")
	parent := t.TempDir()
	target := filepath.Join(parent, "target")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, remote := range []string{"/tmp/..", "..", "/tmp/.", "/"} {
		t.Run(remote, func(t *testing.T) {
			r := cli(t, url, "", "cp", "sb-1:"+remote, target)
			want := "den: cannot name a file in " + target + " after \"" + remote + "\": give the local file's name\n"
			if r.code != 1 || r.stderr != want {
				t.Fatalf("den cp sb-1:%s %s: exit %d, stderr %q; want 1, %q", remote, target, r.code, r.stderr, want)
			}
		})
	}
	for _, dir := range []string{parent, target} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if dir == parent && len(ents) == 1 && ents[0].Name() == "target" {
			continue
		}
		if dir == target && len(ents) == 0 {
			continue
		}
		for _, e := range ents {
			t.Errorf("%s holds %s after the refused copies", dir, e.Name())
		}
	}
	// A plain name is still copied, into the directory.
	if r := cli(t, url, "", "cp", "sb-1:/tmp/ok.txt", target); r.code != 0 {
		t.Fatalf("den cp of a plain name: %+v", r)
	}
	if b, err := os.ReadFile(filepath.Join(target, "ok.txt")); err != nil || string(b) != "pwned" {
		t.Fatalf("ok.txt: %q %v", b, err)
	}
}
