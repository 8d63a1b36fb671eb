package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testImage = "busybox"

// create makes a sandbox and returns its ID.
func (in *instance) create(args ...string) string {
	in.t.Helper()
	id := strings.TrimSpace(in.mustDen(append([]string{"create", testImage}, args...)...))
	if id == "" || strings.ContainsAny(id, " \n") {
		in.t.Fatalf("den create printed %q, want one sandbox ID", id)
	}
	return id
}

func TestRunPrintsOutputAndExitCode(t *testing.T) {
	den := startDen(t, "")
	res := den.den(nil, "run", testImage, "--", "sh", "-c", "echo hello; echo oops >&2; exit 3")
	if res.code != 3 || res.stdout != "hello\n" || res.stderr != "oops\n" {
		t.Fatalf("den run: code=%d stdout=%q stderr=%q, want 3 %q %q", res.code, res.stdout, res.stderr, "hello\n", "oops\n")
	}
	if ids := jsonIDs(den.mustDen("ls", "--json")); len(ids) != 0 {
		t.Errorf("den run left sandboxes behind: %v", ids)
	}
}

func TestSandboxRunsTheGVisorKernel(t *testing.T) {
	den := startDen(t, "")
	id := den.create()
	got := den.mustDen("exec", id, "--", "cat", "/proc/version")
	host, err := os.ReadFile("/proc/version")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(got) == strings.TrimSpace(string(host)) || got == "" {
		t.Fatalf("/proc/version inside the sandbox is the host's: %q", got)
	}
	if dmesg := den.mustDen("exec", id, "--", "dmesg"); !strings.Contains(dmesg, "gVisor") {
		t.Errorf("dmesg inside the sandbox does not mention gVisor: %q", tail(dmesg, 500))
	}
}

// randomFile writes size pseudo-random bytes and returns the path and sha256.
func randomFile(t *testing.T, size int64) (string, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "data.bin")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	src := rand.NewChaCha8([32]byte{1, 2, 3})
	if _, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(src, size)); err != nil {
		t.Fatal(err)
	}
	return p, hex.EncodeToString(h.Sum(nil))
}

func fileSHA(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestCopyOneGiBRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB copy skipped in -short mode")
	}
	den := startDen(t, "")
	id := den.create("--disk", "3072")
	src, want := randomFile(t, 1<<30)
	den.mustDen("cp", src, id+":/tmp/big.bin")
	inside := strings.Fields(den.mustDen("exec", id, "--", "sha256sum", "/tmp/big.bin"))
	if len(inside) == 0 || inside[0] != want {
		t.Fatalf("sha256 inside the sandbox = %v, want %s", inside, want)
	}
	back := filepath.Join(t.TempDir(), "back.bin")
	den.mustDen("cp", id+":/tmp/big.bin", back)
	if got := fileSHA(t, back); got != want {
		t.Fatalf("sha256 after the round trip = %s, want %s", got, want)
	}
}

func TestRestartAfterKill9KeepsSandboxes(t *testing.T) {
	den := startDen(t, "")
	id := den.create("--name", "survivor")
	den.mustDen("exec", id, "--", "sh", "-c", "echo before > /tmp/mark")
	stopped := den.create()
	den.mustDen("rm", stopped)

	den.kill9()
	den.start()

	ids := jsonIDs(den.mustDen("ls", "--json"))
	if len(ids) != 1 || ids[0] != id {
		t.Fatalf("after kill -9 and restart, den ls = %v, want [%s]", ids, id)
	}
	if got := den.mustDen("exec", "survivor", "--", "cat", "/tmp/mark"); got != "before\n" {
		t.Fatalf("file written before the crash reads %q, want %q", got, "before\n")
	}
	if got := den.mustDen("get", id, "--json"); !strings.Contains(got, `"state": "running"`) && !strings.Contains(got, `"state":"running"`) {
		t.Fatalf("den get after restart: %s", got)
	}
}

func TestExecErrorsNameTheProblem(t *testing.T) {
	den := startDen(t, "")
	res := den.den(nil, "exec", "nosuchsandbox", "--", "true")
	if res.code == 0 || !strings.Contains(res.stderr, "not found") {
		t.Fatalf("exec in unknown sandbox: code=%d stderr=%q, want non-zero and 'not found'", res.code, res.stderr)
	}
	id := den.create()
	den.mustDen("rm", id)
	res = den.den(nil, "exec", id, "--", "true")
	if res.code == 0 || !strings.Contains(res.stderr, "not found") {
		t.Fatalf("exec in deleted sandbox: code=%d stderr=%q", res.code, res.stderr)
	}
}

func TestTimeoutRemovesSandbox(t *testing.T) {
	den := startDen(t, "")
	id := den.create("--timeout", "1")
	keep := den.create("--timeout", "0")
	listed := func() string { return strings.Join(jsonIDs(den.mustDen("ls", "--json")), " ") }
	deadline := time.Now().Add(30 * time.Second)
	for strings.Contains(listed(), id) {
		if time.Now().After(deadline) {
			t.Fatalf("sandbox %s with a 1 s timeout still listed after 30 s", id)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := listed(); got != keep {
		t.Fatalf("after the timeout, den ls = %q, want only the sandbox without timeout %s", got, keep)
	}
}
