package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestBaseImage builds the Debian base image the way `make up` does (den up
// without --no-base) and checks what the README promises of it. It takes a
// few minutes, so it runs only with DEN_TEST_BASE=1 (`make test` sets it).
func TestBaseImage(t *testing.T) {
	if os.Getenv("DEN_TEST_BASE") != "1" {
		t.Skip("set DEN_TEST_BASE=1 to build and test the Debian base image (minutes)")
	}
	bin := denBin(t)
	dataDir := os.Getenv("DEN_TEST_BASE_DATA_DIR") // reuse a built base between runs
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	den := &instance{t: t, bin: bin, dataDir: dataDir, log: &bytes.Buffer{}, upWait: 15 * time.Minute}
	den.start()
	t.Cleanup(func() { den.removeAll(); den.stop() })
	if ls := den.mustDen("image", "ls"); !strings.Contains(ls, "base") {
		t.Fatalf("den up without --no-base did not provide the base image; den image ls:\n%s", ls)
	}

	t.Run("run with the default image", func(t *testing.T) {
		res := den.den(nil, "run", "--", "sh", "-c", "echo hello; exit 3")
		if res.code != 3 || res.stdout != "hello\n" {
			t.Fatalf("den run: code=%d stdout=%q stderr=%q", res.code, res.stdout, res.stderr)
		}
	})
	id := strings.TrimSpace(den.mustDen("create", "--name", "dev"))
	t.Run("tools", func(t *testing.T) {
		out := den.mustDen("exec", id, "--", "bash", "-lc",
			`python3 -c 'print(6*7)'; python -c 'print(1)'; node -e 'console.log(2+2)'; git --version >/dev/null && echo git; curl --version >/dev/null && echo curl; ps -p 1 -o comm=`)
		want := "42\n1\n4\ngit\ncurl\n"
		if !strings.HasPrefix(out, want) {
			t.Fatalf("tools in base: %q, want prefix %q", out, want)
		}
	})
	t.Run("user", func(t *testing.T) {
		out := den.mustDen("exec", "--user", "user", id, "--", "bash", "-c", "whoami; pwd; sudo -n whoami")
		if out != "user\n/home/user\nroot\n" {
			t.Fatalf("as user: %q", out)
		}
	})
	t.Run("interactive bash", func(t *testing.T) {
		if _, err := exec.LookPath("tmux"); err != nil {
			t.Skip("tmux not installed (make deps installs it)")
		}
		interactive(t, den, id, "bash", "echo $((6*7)) ${BASH_VERSION%%.*}", "42 5")
	})
	t.Run("python web and WebSocket servers through their URLs", func(t *testing.T) {
		testPythonServers(t, den, id)
	})
}
