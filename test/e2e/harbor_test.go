package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/internal/testenv"
)

// harborJob is the job name of the Harbor run; its results land in
// <jobs dir>/harborJob.
const harborJob = "den-e2e"

// TestHarbor runs Harbor (the Terminal-Bench harness, PyPI `harbor`, in
// test/harbor/.venv) unmodified with its built-in e2b environment against a
// real `den up`, configured only by the E2B_* lines of den's env file. The
// two tasks of test/harbor/tasks share one Dockerfile (`FROM base`), so the
// job builds one E2B template through den's template-build API, then runs
// each task in a sandbox of it: Harbor's oracle agent runs the task's
// solution/solve.sh and the verifier its tests/test.sh, which writes the
// reward. count-lines' solution is right (reward 1); count-lines-wrong's is
// not (reward 0). It runs with the e2b SDK suites (DEN_TEST_E2B_SDKS=1).
func TestHarbor(t *testing.T) {
	if os.Getenv("DEN_TEST_E2B_SDKS") != "1" {
		t.Skip("set DEN_TEST_E2B_SDKS=1 to run a Harbor job through its e2b environment against den (builds the base image, minutes)")
	}
	root := testenv.RepoRoot()
	if out, err := exec.Command(filepath.Join(root, "scripts", "harbor-test-deps.sh")).CombinedOutput(); err != nil {
		t.Fatalf("scripts/harbor-test-deps.sh: %v\n%s", err, out)
	}
	harbor := filepath.Join(root, "test", "harbor", ".venv", "bin", "harbor")
	if _, err := os.Stat(harbor); err != nil {
		testenv.Missing(t, "%s not installed: Harbor needs Python >= 3.12 (scripts/harbor-test-deps.sh looks for python3.12+ and pyenv's)", harbor)
	}

	den, env := startE2BDen(t)
	api := e2bAPI(t, env)
	// Harbor reuses a template it built before (its name is the hash of the
	// task's environment/); start from none so every run builds it.
	api.deleteTemplates("harbor-")
	t.Cleanup(func() { api.deleteTemplates("harbor-") })

	jobs := t.TempDir()
	out := runHarbor(t, den, harbor, env, jobs,
		"run", "--path", filepath.Join(root, "test", "harbor", "tasks"),
		"--agent", "oracle", "--env", "e2b",
		"--jobs-dir", jobs, "--job-name", harborJob, "--n-concurrent", "2", "--yes")

	if !strings.Contains(out, "E2B template build started: harbor-") {
		t.Errorf("harbor built no template (it says %q when it does):\n%s", "E2B template build started", tail(out, 5000))
	}
	trials := readHarborJob(t, filepath.Join(jobs, harborJob), out, den, 2)
	got := map[string]float64{}
	for _, tr := range trials {
		got[tr.TaskName] = tr.VerifierResult.Rewards["reward"]
	}
	want := map[string]float64{"den/count-lines": 1, "den/count-lines-wrong": 0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rewards by task (-want +got):\n%s", diff)
	}
	// The verifier read the file the Dockerfile's RUN wrote (7 lines, 44
	// bytes) and the answers the solutions wrote.
	wantStdout := map[string]string{
		"den/count-lines":       "answer 7 is right\n",
		"den/count-lines-wrong": "answer '44' is wrong: want 7\n",
	}
	for _, tr := range trials {
		b, err := os.ReadFile(filepath.Join(tr.dir, "verifier", "test-stdout.txt"))
		if err != nil {
			t.Errorf("%s: %v", tr.TrialName, err)
			continue
		}
		if string(b) != wantStdout[tr.TaskName] {
			t.Errorf("%s: verifier stdout %q, want %q", tr.TrialName, b, wantStdout[tr.TaskName])
		}
	}
	if t.Failed() {
		t.Logf("harbor output:\n%s\nden log:\n%s", tail(out, 20000), tail(den.log.String(), 3000))
	}
}

// runHarbor runs the harbor CLI with den's E2B variables, a fresh HOME and
// telemetry off (the tests send traffic to loopback only), and returns its
// output. Harbor exits 0 even when trials fail; the caller reads results.
func runHarbor(t *testing.T, den *instance, harbor string, env []string, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, harbor, args...)
	cmd.Dir = dir
	cmd.Env = append(withoutE2B(os.Environ()), env...)
	cmd.Env = append(cmd.Env, "HOME="+t.TempDir(), "HARBOR_TELEMETRY=0", "NO_COLOR=1", "COLUMNS=200")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("harbor %s failed after %s: %v\n%s\nden log:\n%s", strings.Join(args, " "),
			time.Since(start).Round(time.Second), err, tail(out.String(), 20000), tail(den.log.String(), 3000))
	}
	t.Logf("harbor %s took %s:\n%s", args[0], time.Since(start).Round(time.Second), tail(out.String(), 3000))
	return out.String()
}

// harborTrial is the part of a Harbor trial's result.json the test reads.
type harborTrial struct {
	TaskName       string `json:"task_name"`
	TrialName      string `json:"trial_name"`
	VerifierResult struct {
		Rewards map[string]float64 `json:"rewards"`
	} `json:"verifier_result"`
	ExceptionInfo *struct {
		Type    string `json:"exception_type"`
		Message string `json:"exception_message"`
	} `json:"exception_info"`
	dir string
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("parse %s: %v\n%s", path, err, tail(string(b), 2000))
	}
}

// e2bClient calls den's E2B API with the E2B_* variables of den's env file.
type e2bClient struct {
	t        *testing.T
	url, key string
}

func e2bAPI(t *testing.T, env []string) *e2bClient {
	c := &e2bClient{t: t}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "E2B_API_URL":
			c.url = v
		case "E2B_API_KEY":
			c.key = v
		}
	}
	return c
}

// do sends one request and fails the test unless it answers want.
func (c *e2bClient) do(method, path string, want int, out any) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("X-API-Key", c.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s: %s, want %d: %s", method, path, resp.Status, want, body.String())
	}
	if out != nil {
		if err := json.Unmarshal(body.Bytes(), out); err != nil {
			c.t.Fatalf("%s %s: %v\n%s", method, path, err, body.String())
		}
	}
}

// deleteTemplates deletes every template with a name that starts with prefix.
func (c *e2bClient) deleteTemplates(prefix string) {
	c.t.Helper()
	var list []struct {
		TemplateID string   `json:"templateID"`
		Names      []string `json:"names"`
	}
	c.do("GET", "/templates", http.StatusOK, &list)
	for _, tpl := range list {
		for _, name := range tpl.Names {
			if strings.HasPrefix(name, prefix) {
				c.do("DELETE", "/templates/"+tpl.TemplateID, http.StatusNoContent, nil)
				break
			}
		}
	}
}
