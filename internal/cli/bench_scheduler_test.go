package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestBenchSchedulerSmall(t *testing.T) {
	isolate(t)
	r := cli(t, "http://127.0.0.1:1", "", "bench", "scheduler", "--nodes", "300", "--churn", "2000", "--bursts", "2", "--naive", "100", "--json", "-")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var rep schedulerBenchReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, r.stdout)
	}
	if len(rep.Runs) != 1 || rep.Runs[0].Nodes != 300 || rep.Runs[0].Churn.Ops != 2000 || rep.Runs[0].Naive == nil || rep.GOMAXPROCS != 1 {
		t.Fatalf("report: %+v", rep)
	}
	if !strings.Contains(r.stderr, "Place calls/s") {
		t.Fatalf("no table on stderr with --json -: %s", r.stderr)
	}
}

func TestBenchSchedulerUsage(t *testing.T) {
	isolate(t)
	r := cli(t, "http://127.0.0.1:1", "", "bench", "scheduler", "--nodes", "50")
	want := "den: --nodes: 50 is under 100\nRun 'den bench scheduler --help' for usage.\n"
	if r.code == 0 || r.stderr != want {
		t.Fatalf("exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}
}
