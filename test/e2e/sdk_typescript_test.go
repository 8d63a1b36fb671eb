package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/internal/testenv"
)

// TestTypeScriptSDK runs the TypeScript SDK's own suite (sdk/typescript,
// `node test/run.mjs`): the OpenAPI coverage table, the freshness of the
// committed dist/ and generated types, its unit tests, and its tests of
// every method group against a real `den up` that the suite starts with
// this checkout's den binary (DEN_BIN) and the busybox image. It runs only
// with DEN_TEST_E2B_SDKS=1, as the e2b SDK suites do (make test sets it).
func TestTypeScriptSDK(t *testing.T) {
	if os.Getenv("DEN_TEST_E2B_SDKS") != "1" {
		t.Skip("set DEN_TEST_E2B_SDKS=1 to run the TypeScript SDK suite (sdk/typescript) against a den up it starts (npm ci of its dev dependencies; make test sets it)")
	}
	bin := denBin(t)
	node, npm := lookPath("node"), lookPath("npm")
	if node == "" || npm == "" {
		testenv.Missing(t, "node/npm not found: install Node.js >= 20 to run the TypeScript SDK suite")
	}
	root := testenv.RepoRoot()
	if out, err := exec.Command(filepath.Join(root, "scripts", "sdk-typescript-deps.sh")).CombinedOutput(); err != nil {
		t.Fatalf("scripts/sdk-typescript-deps.sh: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "test/run.mjs")
	cmd.Dir = filepath.Join(root, "sdk", "typescript")
	// The suite starts its own den: no server of the caller's may leak in.
	cmd.Env = append(withoutDen(os.Environ()), "DEN_BIN="+bin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("node test/run.mjs in sdk/typescript failed after %s: %v\n%s", time.Since(start).Round(time.Second), err, tail(out.String(), 60000))
	}
	t.Logf("node test/run.mjs passed in %s:\n%s", time.Since(start).Round(time.Second), tail(out.String(), 4000))
}

// withoutDen drops from env the settings that point a client at a server
// (DEN_URL, DEN_API_KEY, DEN_DATA_DIR, E2B_*) and DEN_BIN, which the
// caller sets.
func withoutDen(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "DEN_URL", k == "DEN_API_KEY", k == "DEN_DATA_DIR", k == "DEN_BIN", strings.HasPrefix(k, "E2B_"):
		default:
			out = append(out, kv)
		}
	}
	return out
}
