package build

import (
	"errors"
	"io/fs"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// layeredView returns a view of layers given bottom first.
func layeredView(t *testing.T, layers ...map[string]string) *view {
	t.Helper()
	v := &view{overlay: true}
	for _, spec := range layers {
		dir := t.TempDir()
		writeSpec(t, dir, spec)
		v.layers = append([]string{dir}, v.layers...)
	}
	return v
}

func TestViewMergesLayersLikeOverlayfs(t *testing.T) {
	requireRoot(t)
	v := layeredView(t,
		map[string]string{"a/x": "1", "a/y": "1", "b/z": "1", "c/old": "1", "f": "file", "d/": ""},
		map[string]string{"a/y": "2", "a/x": "<whiteout>", "b/": "<opaque>", "b/w": "2", "c": "now a file", "f/": "", "f/g": "dir now"},
	)
	tests := []struct {
		dir  string
		want []string
	}{
		{"", []string{"a", "b", "c", "d", "f"}},
		{"a", []string{"y"}},
		{"b", []string{"w"}},
		{"f", []string{"g"}},
		{"d", nil},
	}
	for _, tt := range tests {
		n, err := v.lookup(tt.dir)
		if err != nil {
			t.Fatalf("lookup %q: %v", tt.dir, err)
		}
		names, err := v.readDir(n)
		if err != nil {
			t.Fatalf("readDir %q: %v", tt.dir, err)
		}
		if diff := cmp.Diff(tt.want, names); diff != "" {
			t.Errorf("readDir %q (-want +got):\n%s", tt.dir, diff)
		}
	}
	for p, want := range map[string]string{"a/y": "2", "c": "now a file", "f/g": "dir now"} {
		if got, err := v.readFile(p); err != nil || string(got) != want {
			t.Errorf("readFile %s = %q, %v; want %q", p, got, err, want)
		}
	}
	for _, p := range []string{"a/x", "b/z", "c/old"} {
		if _, err := v.lookup(p); !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			t.Errorf("lookup %s: %v, want not found", p, err)
		}
	}
}

func TestViewResolvesLinksInsideTheRoot(t *testing.T) {
	requireRoot(t)
	v := layeredView(t, map[string]string{
		"usr/lib/x":  "x",
		"lib":        "->usr/lib",
		"abs":        "->/usr/lib",
		"up":         "->../../../..",
		"loop":       "->loop",
		"rel/in":     "->../lib",
		"file":       "f",
		"dangling":   "->nowhere/deeper",
		"etc/passwd": "root",
	})
	tests := []struct {
		in, want string
		err      error
	}{
		{"lib/x", "usr/lib/x", nil},
		{"/abs/x", "usr/lib/x", nil},
		{"up/etc/passwd", "etc/passwd", nil},
		{"../../lib", "usr/lib", nil},
		{"rel/in/x", "usr/lib/x", nil},
		{"new/dir/file", "new/dir/file", nil},
		{"dangling", "nowhere/deeper", nil},
		{"loop", "", syscall.ELOOP},
		{"file/x", "", syscall.ENOTDIR},
	}
	for _, tt := range tests {
		got, err := v.resolve(tt.in, true)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("resolve %q: %v, want %v", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("resolve %q = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if got, err := v.resolve("lib", false); err != nil || got != "lib" {
		t.Errorf("resolve lib without following the last link = %q, %v", got, err)
	}
}

func TestEmptyView(t *testing.T) {
	v := &view{}
	names, err := v.readDir(v.root())
	if err != nil || len(names) != 0 {
		t.Errorf("readDir of an empty view: %v, %v", names, err)
	}
	if _, err := v.stat("x"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat in an empty view: %v", err)
	}
}
