package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/internal/sandboxnet/fakeinternet"
	"github.com/denhq/den/internal/testenv"
	den "github.com/denhq/den/sdk/go"
)

// harborDenTasks are the tasks of test/harbor-den/tasks by name, with what
// each verifier prints when everything it checks holds. Three build their
// own Dockerfile FROM den's base image; prebuilt-image names the base image.
var harborDenTasks = map[string]string{
	"den/workdir-copy": "marker: ok\ntotal: ok\nheader: ok\n",
	"den/user-env": "out.txt: ok\nowner: ok\nverifier-user: ok\ndns: ok\nhttps: ok\n" +
		"memory-kb: ok\ndisk-mb: ok\n",
	"den/net-phases":     "agent-phase: ok\nverifier-phase: ok\n",
	"den/prebuilt-image": "image: ok\ncount: ok\n",
}

// harborDenBuilt is how many of harborDenTasks build an image.
const harborDenBuilt = 3

// TestHarborDenEnvironment runs Harbor (test/harbor/.venv) with den's own
// environment provider, den.harbor:DenEnvironment of sdk/python, against a
// real `den up`, twice. Harbor's oracle agent runs each task's solution and
// its verifier writes the reward; every trial must score 1. The tasks check
// from inside the sandbox what the provider maps: the image's WORKDIR, ENV
// and USER, exec as another user with cwd and env, the task's memory, disk
// and network policy (static, and switched between the agent and verifier
// phases), directories uploaded (tests/) and downloaded (the verifier's logs,
// an artifact) as tar streams, a task's docker_image. The first run (the
// deprecated --environment-import-path, DEN_URL and DEN_API_KEY) builds an
// image per Dockerfile; the second (--env, only DEN_DATA_DIR, so the SDK reads
// den's env file) reuses them. It runs with the e2b SDK suites
// (DEN_TEST_E2B_SDKS=1), which share the base image's data directory.
func TestHarborDenEnvironment(t *testing.T) {
	if os.Getenv("DEN_TEST_E2B_SDKS") != "1" {
		t.Skip("set DEN_TEST_E2B_SDKS=1 to run Harbor jobs through den.harbor:DenEnvironment against den (builds the base image, minutes)")
	}
	root := testenv.RepoRoot()
	if out, err := exec.Command(filepath.Join(root, "scripts", "harbor-den-deps.sh")).CombinedOutput(); err != nil {
		t.Fatalf("scripts/harbor-den-deps.sh: %v\n%s", err, out)
	}
	harbor := filepath.Join(root, "test", "harbor", ".venv", "bin", "harbor")
	if _, err := os.Stat(harbor); err != nil {
		testenv.Missing(t, "%s not installed: Harbor needs Python >= 3.12 (scripts/harbor-test-deps.sh looks for python3.12+ and pyenv's)", harbor)
	}

	// The net-phases task resolves names of a fake internet: nothing leaves
	// the machine.
	inet := fakeinternet.New(t)
	inet.ServeDNS(t, map[string]string{"allowed.test": fakeinternet.WebA, "other.test": fakeinternet.WebB})
	d, _ := startE2BDen(t, "--sandbox-dns", fakeinternet.DNS+":53")
	c, err := den.NewClient(den.WithURL(d.url), den.WithAPIKey(d.key))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The data directory outlives the test (it keeps the base image); start
	// without the images an earlier run built, so this run builds them.
	removeHarborImages(t, c)
	t.Cleanup(func() { removeHarborImages(t, c) })

	tasks := filepath.Join(root, "test", "harbor-den", "tasks")
	jobs := t.TempDir()
	run := func(job string, env []string, how ...string) []harborTrial {
		args := append([]string{"run", "--path", tasks, "--agent", "oracle"}, how...)
		args = append(args, "--jobs-dir", jobs, "--job-name", job, "--n-concurrent", "4", "--yes")
		out := runHarborDen(t, d, harbor, env, jobs, args...)
		trials := readHarborJob(t, filepath.Join(jobs, job), out, d, len(harborDenTasks))
		checkHarborDenTrials(t, trials)
		return trials
	}

	first := run("den-harbor-1", []string{"DEN_URL=" + d.url, "DEN_API_KEY=" + d.key},
		"--environment-import-path", "den.harbor:DenEnvironment")
	built := harborImages(t, c)
	if len(built) != harborDenBuilt {
		t.Errorf("after the first job den has %d harbor-* images, want %d (one per Dockerfile): %v", len(built), harborDenBuilt, built)
	}
	checkBuildLogs(t, first, "building den image harbor-", "reusing den image harbor-")
	checkArtifact(t, first)

	second := run("den-harbor-2", []string{"DEN_DATA_DIR=" + d.dataDir},
		"--env", "den.harbor:DenEnvironment")
	if diff := cmp.Diff(built, harborImages(t, c)); diff != "" {
		t.Errorf("the second job changed the harbor-* images instead of reusing them (-first +second):\n%s", diff)
	}
	checkBuildLogs(t, second, "reusing den image harbor-", "building den image harbor-")

	// A Dockerfile whose step fails fails its trial, not retried, with the
	// step and the build log's tail.
	broken := filepath.Join(root, "test", "harbor-den", "broken")
	out := runHarborDen(t, d, harbor, []string{"DEN_URL=" + d.url, "DEN_API_KEY=" + d.key}, jobs,
		"run", "--path", broken, "--agent", "oracle", "--env", "den.harbor:DenEnvironment",
		"--jobs-dir", jobs, "--job-name", "den-harbor-broken", "--yes")
	checkBrokenBuild(t, filepath.Join(jobs, "den-harbor-broken"), out, broken)

	// stop() killed every trial's sandbox.
	for sb, err := range c.All(ctx, den.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if s := sb.Metadata["harbor.session_id"]; s != "" && sb.State != "terminated" {
			t.Errorf("sandbox %s of trial %s is %s after the jobs, want it gone", sb.ID, s, sb.State)
		}
	}
	if t.Failed() {
		t.Logf("den log:\n%s", tail(d.log.String(), 5000))
	}
}

// runHarborDen runs the harbor CLI with env (den's address) and without the
// caller's DEN_ and E2B_ variables, so only env says where den is.
func runHarborDen(t *testing.T, d *instance, harbor string, env []string, dir string, args ...string) string {
	t.Helper()
	var clean []string
	for _, kv := range withoutE2B(os.Environ()) {
		if !strings.HasPrefix(kv, "DEN_") {
			clean = append(clean, kv)
		}
	}
	return runHarbor(t, d, harbor, append(clean, env...), dir, args...)
}

// readHarborJob reads a job's result.json and each trial's, and fails the
// test unless all want trials completed without raising.
func readHarborJob(t *testing.T, jobDir, out string, d *instance, want int) []harborTrial {
	t.Helper()
	var job struct {
		NTotalTrials int `json:"n_total_trials"`
		Stats        struct {
			Completed int `json:"n_completed_trials"`
			Errored   int `json:"n_errored_trials"`
		} `json:"stats"`
	}
	readJSON(t, filepath.Join(jobDir, "result.json"), &job)
	paths, _ := filepath.Glob(filepath.Join(jobDir, "*", "result.json"))
	var trials []harborTrial
	var errs []string
	for _, p := range paths {
		tr := harborTrial{dir: filepath.Dir(p)}
		readJSON(t, p, &tr)
		if e := tr.ExceptionInfo; e != nil {
			log, _ := os.ReadFile(filepath.Join(tr.dir, "trial.log"))
			errs = append(errs, fmt.Sprintf("trial %s raised %s: %s\ntrial.log:\n%s", tr.TrialName, e.Type, e.Message, tail(string(log), 6000)))
		}
		trials = append(trials, tr)
	}
	if len(errs) > 0 || job.NTotalTrials != want || job.Stats.Completed != want || job.Stats.Errored != 0 || len(trials) != want {
		t.Fatalf("harbor job %s: %d trials, %d completed, %d errored, %d trial results; want %d completed\n%s\nharbor output:\n%s\nden log:\n%s",
			filepath.Base(jobDir), job.NTotalTrials, job.Stats.Completed, job.Stats.Errored, len(trials), want,
			strings.Join(errs, "\n"), tail(out, 20000), tail(d.log.String(), 3000))
	}
	return trials
}

// checkHarborDenTrials requires one trial per task, each with reward 1 and
// the verifier output that says every check passed.
func checkHarborDenTrials(t *testing.T, trials []harborTrial) {
	t.Helper()
	got := map[string]float64{}
	want := map[string]float64{}
	for name := range harborDenTasks {
		want[name] = 1
	}
	for _, tr := range trials {
		got[tr.TaskName] = tr.VerifierResult.Rewards["reward"]
		b, err := os.ReadFile(filepath.Join(tr.dir, "verifier", "test-stdout.txt"))
		if err != nil {
			t.Errorf("%s: %v", tr.TrialName, err)
			continue
		}
		if w := harborDenTasks[tr.TaskName]; string(b) != w {
			t.Errorf("%s: verifier stdout %q, want %q", tr.TrialName, b, w)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rewards by task (-want +got):\n%s", diff)
	}
}

// checkBuildLogs requires each trial that builds an image to log has (in
// its trial.log) and none to log hasNot.
func checkBuildLogs(t *testing.T, trials []harborTrial, has, hasNot string) {
	t.Helper()
	n := 0
	for _, tr := range trials {
		b, err := os.ReadFile(filepath.Join(tr.dir, "trial.log"))
		if err != nil {
			t.Errorf("%s: %v", tr.TrialName, err)
			continue
		}
		if strings.Contains(string(b), hasNot) {
			t.Errorf("%s: trial.log says %q:\n%s", tr.TrialName, hasNot, tail(string(b), 3000))
		}
		if strings.Contains(string(b), has) {
			n++
		}
	}
	if n != harborDenBuilt {
		t.Errorf("%d trial logs say %q, want %d", n, has, harborDenBuilt)
	}
}

// checkArtifact requires workdir-copy's report directory, which Harbor
// downloads from the sandbox after the trial, on the host.
func checkArtifact(t *testing.T, trials []harborTrial) {
	t.Helper()
	for _, tr := range trials {
		if tr.TaskName != "den/workdir-copy" {
			continue
		}
		dir := filepath.Join(tr.dir, "artifacts", "srv", "app", "report")
		got := map[string]string{}
		for _, name := range []string{"total.txt", "header.txt"} {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Errorf("artifact: %v", err)
			}
			got[name] = string(b)
		}
		want := map[string]string{"total.txt": "251\n", "header.txt": "item,warehouse,count\n"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("artifact %s (-want +got):\n%s", dir, diff)
		}
		return
	}
	t.Error("no den/workdir-copy trial")
}

// checkBrokenBuild requires the job of test/harbor-den/broken to have one
// trial, failed with SandboxBuildFailedError and this message.
func checkBrokenBuild(t *testing.T, jobDir, out, tasks string) {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(jobDir, "*", "result.json"))
	if len(paths) != 1 {
		t.Fatalf("broken job: %d trial results, want 1\n%s", len(paths), tail(out, 5000))
	}
	var tr harborTrial
	readJSON(t, paths[0], &tr)
	dockerfile := filepath.Join(tasks, "bad-step", "environment", "Dockerfile")
	cmd := `echo "this step fails" && exit 3`
	want := fmt.Sprintf("den could not build %s: Dockerfile:3: RUN %s: process %q did not complete successfully: exit code 3\n"+
		"last lines of the build log:\n", dockerfile, cmd, "/bin/sh -c "+cmd)
	if tr.ExceptionInfo == nil || tr.ExceptionInfo.Type != "SandboxBuildFailedError" || !strings.HasPrefix(tr.ExceptionInfo.Message, want) ||
		!strings.Contains(tr.ExceptionInfo.Message, "\n#2 this step fails\n") {
		t.Errorf("broken build: exception %+v, want SandboxBuildFailedError with a message that starts %q and shows the step's output", tr.ExceptionInfo, want)
	}
}

// harborImages lists den's images named harbor-*, the ones
// DenEnvironment builds, as "name id created_at" lines.
func harborImages(t *testing.T, c *den.Client) []string {
	t.Helper()
	list, err := c.Images().List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, im := range list {
		if strings.HasPrefix(im.Name, "harbor-") {
			out = append(out, fmt.Sprintf("%s %s %s", im.Name, im.ID, im.CreatedAt.Format(time.RFC3339Nano)))
		}
	}
	sort.Strings(out)
	return out
}

func removeHarborImages(t *testing.T, c *den.Client) {
	t.Helper()
	list, err := c.Images().List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range list {
		if strings.HasPrefix(im.Name, "harbor-") {
			if err := c.Images().Remove(context.Background(), im.Name); err != nil {
				t.Errorf("remove image %s: %v", im.Name, err)
			}
		}
	}
}
