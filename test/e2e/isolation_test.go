package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/internal/testenv"
)

// TestMemoryHogAndForkBombStayInside runs a 4 GiB allocation and a fork
// bomb in 512 MiB sandboxes and checks that a neighbour sandbox and den keep
// working and the hogs are stopped inside their sandboxes.
func TestMemoryHogAndForkBombStayInside(t *testing.T) {
	den := startDen(t, "")
	neighbour := den.create("--memory", "512")
	hog := den.create("--memory", "512")
	bomb := den.create("--memory", "512")

	// dd allocates its block size up front and fills it from /dev/zero.
	res := den.den(nil, "exec", hog, "--", "dd", "if=/dev/zero", "of=/dev/null", "bs=4G", "count=1")
	if res.code == 0 {
		t.Fatalf("a 4 GiB allocation in a 512 MiB sandbox succeeded: %s %s", res.stdout, res.stderr)
	}
	// The exec's stream broke with the sandbox; den says so, naming it.
	if !strings.Contains(res.stderr, "sandbox "+hog) || strings.Contains(res.stderr, "protocol error") {
		t.Errorf("exec in a sandbox stopped for memory: stderr %q, want an error naming the sandbox", res.stderr)
	}
	// gVisor has no OOM killer of its own: the sandbox's cgroup stops the
	// whole sandbox, and den records why.
	t.Logf("dd in the hog: exit %d, stderr %q", res.code, res.stderr) // shown when the wait below fails
	hogState := func() string { return den.mustDen("get", hog, "--json") }
	if !eventually(hogState, "out of memory", 20*time.Second) {
		t.Fatalf("the hog was not stopped for memory: %s\n%s", hogState(), oomEvidence(den, hog))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	den.denCtx(ctx, nil, "exec", bomb, "--", "sh", "-c", "f(){ f | f & }; f; sleep 5")

	if got := den.mustDen("exec", neighbour, "--", "echo", "alive"); got != "alive\n" {
		t.Fatalf("neighbour sandbox after the hogs: %q", got)
	}
	if out, err := exec.Command("sh", "-c", "echo host-ok").Output(); err != nil || string(out) != "host-ok\n" {
		t.Fatalf("host cannot fork after the fork bomb: %v %q", err, out)
	}
	den.mustDen("rm", bomb, hog)
}

// TestInteractiveShell drives `den exec -t` through a real terminal (tmux).
func TestInteractiveShell(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		testenv.Missing(t, "tmux not installed (make deps installs it)")
	}
	den := startDen(t, "")
	interactive(t, den, den.create(), "sh", "echo $((6*7))", "42")
}

// interactive runs `den exec -t ID -- shell` in a 120x30 tmux terminal, types
// input, waits for want on the screen, checks the terminal size reached the
// sandbox, and checks that `exit 5` ends the CLI with status 5.
func interactive(t *testing.T, den *instance, id, shell, input, want string) {
	t.Helper()
	session := "den-e2e-" + id[:8]
	exitFile := filepath.Join(t.TempDir(), "exit")
	cmdline := fmt.Sprintf("DEN_URL=%s DEN_API_KEY=%s %s exec -t %s -- %s; echo EXIT=$? > %s; sleep 30",
		den.url, den.key, den.bin, id, shell, exitFile)
	if out, err := exec.Command("tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "30", cmdline).CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v %s", err, out)
	}
	defer exec.Command("tmux", "kill-session", "-t", session).Run()
	keys := func(k ...string) {
		if out, err := exec.Command("tmux", append([]string{"send-keys", "-t", session}, k...)...).CombinedOutput(); err != nil {
			t.Fatalf("tmux send-keys: %v %s", err, out)
		}
	}
	screen := func() string {
		out, _ := exec.Command("tmux", "capture-pane", "-p", "-t", session).Output()
		return string(out)
	}
	waitFor(t, screen, "#", 20*time.Second)
	keys(input, "Enter")
	waitFor(t, screen, want, 10*time.Second)
	keys("stty size", "Enter")
	waitFor(t, screen, "30 120", 10*time.Second)
	keys("exit 5", "Enter")
	exitStatus := func() string { b, _ := os.ReadFile(exitFile); return string(b) }
	waitFor(t, exitStatus, "EXIT=5", 10*time.Second)
}

// eventually polls screen until it contains want (true) or the deadline
// passes (false).
func eventually(screen func() string, want string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for !strings.Contains(screen(), want) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// oomEvidence gathers what says whether the host killed a task of sandbox
// id for memory: its cgroup's OOM counters, the kernel's recent OOM lines
// and the tail of den's log. It is for the message of a failed test.
func oomEvidence(den *instance, id string) string {
	var b strings.Builder
	state, err := os.ReadFile(filepath.Join(den.dataDir, "sandboxes", "sandboxes", id, "den.json"))
	fmt.Fprintf(&b, "den.json: %s %v\n", state, err)
	var st struct {
		Cgroup string `json:"cgroup"`
	}
	if json.Unmarshal(state, &st) == nil && st.Cgroup != "" {
		for _, f := range []string{"/sys/fs/cgroup/memory" + st.Cgroup + "/memory.oom_control", "/sys/fs/cgroup" + st.Cgroup + "/memory.events"} {
			if data, err := os.ReadFile(f); err == nil {
				fmt.Fprintf(&b, "%s:\n%s", f, data)
			}
		}
	}
	if out, err := exec.Command("sh", "-c", "dmesg | grep -iE 'oom|killed process' | tail -n 20").CombinedOutput(); err == nil {
		fmt.Fprintf(&b, "kernel:\n%s", out)
	}
	fmt.Fprintf(&b, "den log:\n%s", tail(den.log.String(), 3000))
	return b.String()
}

// waitFor polls screen until it contains want or the deadline passes.
func waitFor(t *testing.T, screen func() string, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		s := screen()
		if strings.Contains(s, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("terminal never showed %q; screen:\n%s", want, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
