package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	got := []time.Duration{percentile(d, 50), percentile(d, 95), percentile(d, 99), percentile(d[:1], 99)}
	want := []time.Duration{50 * time.Millisecond, 95 * time.Millisecond, 99 * time.Millisecond, time.Millisecond}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("percentiles (-want +got):\n%s", diff)
	}
}

func TestBenchTTI(t *testing.T) {
	srv := newEnv(t)
	var gotN int
	var gotRunsc, gotRootfs string
	a := &app{floor: func(_ context.Context, runsc, rootfs, _ string, n int) ([]time.Duration, error) {
		gotN, gotRunsc, gotRootfs = n, runsc, rootfs
		return []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond}, nil
	}}
	root := newRoot(a)
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	report := filepath.Join(t.TempDir(), "tti.json")
	root.SetArgs([]string{"--url", srv.URL, "--api-key", testKey, "bench", "tti", "--image", "base",
		"-n", "3", "-c", "2", "--json", report, "--runsc", "/opt/runsc", "--rootfs", "/opt/rootfs"})
	if code := Execute(root); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	if gotN != 3 || gotRunsc != "/opt/runsc" || gotRootfs != "/opt/rootfs" {
		t.Fatalf("floor called with n=%d runsc=%q rootfs=%q", gotN, gotRunsc, gotRootfs)
	}
	for _, want := range []string{"sequential", "3/3", "concurrent", "2/2", "raw runsc", "den p50 / raw runsc p50: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep benchReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Sequential.OK != 3 || rep.Concurrent.OK != 2 || rep.RawFloor.OK != 3 || rep.RatioP50 <= 0 {
		t.Fatalf("report %s", b)
	}
	if len(srv.Sandboxes()) != 0 || len(srv.Deleted()) != 5 {
		t.Fatalf("bench left sandboxes %v", srv.Sandboxes())
	}
}

func TestBenchTTIFailures(t *testing.T) {
	srv := newEnv(t)
	r := cli(t, srv.URL, "", "bench", "tti", "--image", "missing", "-n", "1", "-c", "0", "--runsc", "")
	if r.code != 1 || !strings.Contains(r.stdout, "0/1") ||
		!strings.Contains(r.stderr, `den: sequential: create sandbox: image "missing" not found (not_found)`) ||
		!strings.Contains(r.stderr, "den: some iterations failed") {
		t.Fatalf("bench with a missing image: %+v", r)
	}
}

func TestBenchResume(t *testing.T) {
	srv := newEnv(t)
	var gotDirty, gotN int
	var gotKind string
	a := &app{checkpointFloor: func(_ context.Context, _, _, _, kind string, dirtyMB, n int) ([]time.Duration, []time.Duration, error) {
		gotKind, gotDirty, gotN = kind, dirtyMB, n
		return []time.Duration{time.Millisecond}, []time.Duration{2 * time.Millisecond}, nil
	}}
	root := newRoot(a)
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	dirty := filepath.Join(t.TempDir(), "shm", "dirty")
	root.SetArgs([]string{"--url", srv.URL, "--api-key", testKey, "bench", "resume", "--image", "base", "-n", "3",
		"--dirty-mb", "1", "--dirty-in", "tmpfs", "--dirty-path", dirty, "--runsc", "/opt/runsc"})
	if code := Execute(root); code != 0 {
		t.Fatalf("exit %d, stderr %q, stdout %q", code, errb.String(), out.String())
	}
	if fi, err := os.Stat(dirty); err != nil || fi.Size() != 1<<20 {
		t.Errorf("dirty memory file: %v, %v; want 1 MiB", fi, err)
	}
	if gotKind != "tmpfs" || gotDirty != 1 || gotN != 3 {
		t.Errorf("floor called with kind=%q dirty=%d n=%d, want tmpfs, 1, 3", gotKind, gotDirty, gotN)
	}
	for _, want := range []string{"den suspend\t", "3/3", "den resume + first command", "raw runsc restore + exec"} {
		if !strings.Contains(strings.ReplaceAll(out.String(), "  ", "\t"), strings.TrimSuffix(want, "\t")) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
