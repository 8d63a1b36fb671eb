package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/internal/testenv"
)

// These benchmarks measure the images issue's figures with the real den
// binary, the real gVisor and a loopback registry; run each once:
//
//	go test ./test/e2e -run '^$' -bench 'BuildCache|PullLarge' -benchtime 1x
//
// Results go to docs/benchmarks.md.

// buildResult is the final JSON object of `den image build --json`.
type buildResult struct {
	ImageID     string `json:"image_id"`
	Steps       int    `json:"steps"`
	CachedSteps int    `json:"cached_steps"`
	RunSteps    int    `json:"run_steps"`
	DurationMS  int64  `json:"duration_ms"`
}

func (in *instance) build(b *testing.B, args ...string) (buildResult, time.Duration) {
	b.Helper()
	start := time.Now()
	out := in.mustDen(append([]string{"image", "build", "--json"}, args...)...)
	took := time.Since(start)
	var r buildResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		b.Fatalf("den image build --json printed %q: %v", out, err)
	}
	return r, took
}

const cacheDockerfile = `FROM busybox
RUN dd if=/dev/urandom of=/blob bs=1M count=64 2>/dev/null && sha256sum /blob > /blob.sum
COPY a.txt /a.txt
RUN sha256sum /blob /a.txt > /sums
COPY b.txt /b.txt
RUN cat /b.txt > /b-copy
`

// BenchmarkBuildCache: a first build, a rebuild without change, and
// rebuilds after changing the file of the last COPY and of the first COPY.
func BenchmarkBuildCache(b *testing.B) {
	for range b.N {
		d := startDenB(b)
		dir := b.TempDir()
		write := func(name, content string) {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		write("Dockerfile", cacheDockerfile)
		write("a.txt", "a1\n")
		write("b.txt", "b1\n")
		first, tFirst := d.build(b, "-t", "cache-bench", dir)
		again, tAgain := d.build(b, "-t", "cache-bench", dir)
		write("b.txt", "b2\n")
		lastCopy, tLast := d.build(b, "-t", "cache-bench", dir)
		write("a.txt", "a2\n")
		firstCopy, tFirstCopy := d.build(b, "-t", "cache-bench", dir)
		b.ReportMetric(float64(tFirst.Milliseconds()), "first-ms")
		b.ReportMetric(float64(tAgain.Milliseconds()), "unchanged-ms")
		b.ReportMetric(float64(tAgain)/float64(tFirst), "unchanged/first")
		b.ReportMetric(float64(tLast.Milliseconds()), "last-copy-changed-ms")
		b.ReportMetric(float64(tFirstCopy.Milliseconds()), "first-copy-changed-ms")
		b.Logf("run steps: first %d, unchanged %d, last COPY changed %d, first COPY changed %d",
			first.RunSteps, again.RunSteps, lastCopy.RunSteps, firstCopy.RunSteps)
		if first.RunSteps != 3 || again.RunSteps != 0 || lastCopy.RunSteps != 1 || firstCopy.RunSteps != 2 {
			b.Errorf("RUN steps taken = %d, %d, %d, %d; want 3, 0, 1, 2", first.RunSteps, again.RunSteps, lastCopy.RunSteps, firstCopy.RunSteps)
		}
	}
}

// BenchmarkPullLarge pulls a 1 GiB image into a fresh den and reports den's
// peak RSS, then starts 50 sandboxes from it and reports how many copies of
// the image's layers are on disk.
func BenchmarkPullLarge(b *testing.B) {
	for range b.N {
		reg := testenv.Registry(b, testenv.RegistryOptions{BlobDir: b.TempDir()})
		ref := reg + "/bench/large:1"
		src := startDenB(b)
		dir := b.TempDir()
		df := "FROM busybox\nRUN dd if=/dev/urandom of=/large bs=1M count=1024 2>/dev/null\n"
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
			b.Fatal(err)
		}
		src.build(b, "-t", ref, dir)
		src.mustDen("image", "push", "--insecure", ref)

		dst := startDenB(b)
		start := time.Now()
		dst.mustDen("image", "pull", "--insecure", ref)
		took := time.Since(start)
		hwm := vmHWM(b, dst.cmd.Process.Pid)
		b.ReportMetric(float64(took.Milliseconds()), "pull-ms")
		b.ReportMetric(float64(hwm)/(1<<20), "den-peak-rss-MiB")

		const n = 50
		for range n {
			dst.mustDen("create", ref)
		}
		layers := duBytes(b, filepath.Join(dst.dataDir, "images", "layers"))
		sandboxes := duBytes(b, filepath.Join(dst.dataDir, "sandboxes"))
		b.ReportMetric(float64(layers)/(1<<30), "layers-GiB")
		b.ReportMetric(float64(sandboxes)/(1<<20), "50-sandboxes-MiB")
	}
}

// startDenB starts den up for a benchmark.
func startDenB(b *testing.B) *instance {
	b.Helper()
	in := &instance{t: b, bin: denBin(b), dataDir: b.TempDir(), log: &bytes.Buffer{}, upArgs: []string{"--no-base"}, upWait: time.Minute}
	in.start()
	b.Cleanup(func() { in.removeAll(); in.stop() })
	return in
}

// vmHWM is the peak resident set size of process pid, in bytes.
func vmHWM(b *testing.B, pid int) int64 {
	b.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmHWM in /proc/pid/status")
	return 0
}

// duBytes is the disk usage of dir as du counts it: hard links once.
func duBytes(b *testing.B, dir string) int64 {
	b.Helper()
	out, err := exec.Command("du", "-sb", "-x", dir).Output()
	if err != nil {
		b.Fatalf("du %s: %v", dir, err)
	}
	n, err := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return n
}
