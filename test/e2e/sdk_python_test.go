package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/internal/testenv"
)

// TestPythonSDK runs the Python SDK's pytest suite (sdk/python/tests, both
// faces, every method group, 50 concurrent execs, the spec coverage check)
// in the virtualenv scripts/sdk-python-deps.sh makes. The suite starts its
// own `den up --no-base` with the den binary under test (DEN_BIN). It runs
// with the e2b SDK suites (DEN_TEST_E2B_SDKS=1, which make test sets), and
// fails when pytest fails or skips anything.
func TestPythonSDK(t *testing.T) {
	if os.Getenv("DEN_TEST_E2B_SDKS") != "1" {
		t.Skip("SKIP: set DEN_TEST_E2B_SDKS=1 to run the Python SDK's pytest suite (sdk/python/tests) against den (make test does)")
	}
	bin := denBin(t)
	root := testenv.RepoRoot()
	if out, err := exec.Command(filepath.Join(root, "scripts", "sdk-python-deps.sh")).CombinedOutput(); err != nil {
		t.Fatalf("scripts/sdk-python-deps.sh: %v\n%s", err, out)
	}
	dir := filepath.Join(root, "sdk", "python")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(dir, ".venv", "bin", "python"), "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests")
	cmd.Dir = dir
	// The suite's own den, never one the caller's environment names.
	cmd.Env = append(withoutDenEnv(os.Environ()), "DEN_BIN="+bin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start).Round(time.Second)
	if err != nil {
		t.Fatalf("pytest in sdk/python failed after %s: %v\n%s", took, err, tail(out.String(), 60000))
	}
	summary := pytestSummary(out.String())
	if strings.Contains(summary, "skipped") {
		t.Fatalf("pytest in sdk/python skipped tests (%s); every test must run:\n%s", summary, tail(out.String(), 20000))
	}
	if !strings.Contains(summary, "passed") {
		t.Fatalf("pytest in sdk/python printed no passing summary after %s:\n%s", took, tail(out.String(), 20000))
	}
	t.Logf("pytest in sdk/python: %s (%s)", summary, took)
}

// pytestSummary is pytest's last line, e.g. "153 passed in 34.03s".
func pytestSummary(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	return strings.Trim(regexp.MustCompile(`=+`).ReplaceAllString(last, ""), " ")
}

// withoutDenEnv drops the caller's DEN_* and E2B_* settings.
func withoutDenEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "DEN_") && !strings.HasPrefix(kv, "E2B_") {
			out = append(out, kv)
		}
	}
	return out
}
