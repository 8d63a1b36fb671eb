package image

import (
	"context"
	"os"
	"os/exec"
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

// debianProfile and debianRootProfile are the Debian 12 files the edits
// apply to, as debootstrap writes them.
const debianProfile = `# /etc/profile: system-wide .profile file for the Bourne shell (sh(1))

if [ "$(id -u)" -eq 0 ]; then
  PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
else
  PATH="/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"
fi
export PATH

if [ "${PS1-}" ]; then
  if [ "${BASH-}" ] && [ "$BASH" != "/bin/sh" ]; then
    if [ -f /etc/bash.bashrc ]; then
      . /etc/bash.bashrc
    fi
  else
    if [ "$(id -u)" -eq 0 ]; then
      PS1='# '
    else
      PS1='$ '
    fi
  fi
fi
`

const debianRootProfile = `# ~/.profile: executed by Bourne-compatible login shells.

if [ "$BASH" ]; then
  if [ -f ~/.bashrc ]; then
    . ~/.bashrc
  fi
fi

mesg n 2> /dev/null || true
`

// TestQuickLoginShells sources the edited login scripts with a PATH where
// no program can be found: a helper process would fail and say so.
func TestQuickLoginShells(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("SKIP: no bash here")
	}
	root := t.TempDir()
	for name, text := range map[string]string{"etc/profile": debianProfile, "root/.profile": debianRootProfile} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := quickLoginShells(context.Background(), root); err != nil {
		t.Fatalf("quickLoginShells: %v", err)
	}
	if err := quickLoginShells(context.Background(), root); err != nil { // idempotent
		t.Fatalf("quickLoginShells again: %v", err)
	}
	profile, _ := os.ReadFile(filepath.Join(root, "etc/profile"))
	if strings.Contains(string(profile), `"$(id -u)"`) {
		t.Errorf("etc/profile still runs id -u:\n%s", profile)
	}
	rootProfile, _ := os.ReadFile(filepath.Join(root, "root/.profile"))
	if !strings.Contains(string(rootProfile), "if [ -t 0 ]; then mesg n") {
		t.Errorf("root/.profile runs mesg without a terminal:\n%s", rootProfile)
	}

	empty := t.TempDir()
	cmd := exec.Command(bash, "-c", `. "$1/etc/profile"; HOME="$1/root" . "$1/root/.profile"; echo "$PATH"`, "bash", root)
	cmd.Env = []string{"PATH=" + empty}
	cmd.Stdin = nil // not a terminal
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sourcing the edited scripts: %v: %s", err, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("sourcing the edited scripts wrote to stderr (a helper process?): %s", stderr.String())
	}
	want := "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"
	if os.Geteuid() == 0 {
		want = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	if got := strings.TrimSpace(stdout.String()); got != want {
		t.Errorf("PATH = %q, want %q", got, want)
	}
	// A POSIX sh without $EUID still asks id.
	if sh, err := exec.LookPath("dash"); err == nil {
		out, err := exec.Command(sh, "-c", `. "$1/etc/profile"; echo "$PATH"`, "sh", root).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("dash: PATH = %q, %v; want %q", out, err, want)
		}
	}
}
