package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestHostMirror(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"deb822", map[string]string{"sources.list.d/debian.sources": "Types: deb\n# http://snapshot.debian.org/x\nURIs: http://mirror.local/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://sec.local/debian-security\nSuites: bookworm-security\n"}, "http://mirror.local/debian"},
		{"one-line with options", map[string]string{"sources.list": "# comment\ndeb-src http://src.local/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://one.local/debian bookworm main\n"}, "http://one.local/debian"},
		{"other suite only", map[string]string{"sources.list": "deb http://old.local/debian bullseye main\n"}, defaultMirror},
		{"disabled stanza", map[string]string{"sources.list.d/x.sources": "Enabled: no\nTypes: deb\nURIs: http://off.local/debian\nSuites: bookworm\n"}, defaultMirror},
		{"nothing", nil, defaultMirror},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, "sources.list.d"), 0o755)
			for name, content := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := hostMirror(dir, "bookworm"); got != tt.want {
				t.Errorf("hostMirror = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTrackDebootstrap(t *testing.T) {
	out := strings.Join([]string{
		"I: Retrieving InRelease",
		"I: Retrieving adduser 3.134",
		"I: Retrieving bash 5.2.15-2+b2",
		"I: Validating Packages",
		"I: Validating adduser 3.134",
		"I: Extracting bash...",
		"I: Unpacking required packages...",
		"I: Unpacking libacl1:amd64...",
		"I: Configuring bash...",
		"W: something odd",
		"I: Base system installed successfully.",
	}, "\n")
	var got []Progress
	tail := trackDebootstrap(strings.NewReader(out), func(p Progress) { got = append(got, p) })
	want := []Progress{
		{Phase: "retrieving", Current: 1, Detail: "adduser"},
		{Phase: "retrieving", Current: 2, Detail: "bash"},
		{Phase: "validating", Current: 1, Total: 2, Detail: "adduser"},
		{Phase: "extracting", Current: 1, Total: 2, Detail: "bash"},
		{Phase: "unpacking", Current: 1, Total: 2, Detail: "libacl1:amd64"},
		{Phase: "configuring", Current: 1, Total: 2, Detail: "bash"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
	if len(tail) != 10 || tail[9] != "I: Base system installed successfully." {
		t.Errorf("tail = %q, want the last 10 lines", tail)
	}
}
