package node

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/gvisor"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
	"github.com/denhq/den/internal/testenv"
)

// syncBuffer is an io.Writer safe for RunStep's writes and the test's reads;
// onWrite, when set, runs after each write with everything written so far.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	onWrite func(string)
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	n, _ := b.buf.Write(p)
	all := b.buf.String()
	b.mu.Unlock()
	if b.onWrite != nil {
		b.onWrite(all)
	}
	return n, nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// stepCtx bounds one step of a test.
func stepCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// listed returns the IDs the node's driver lists.
func listed(t *testing.T, n *Node) []string {
	t.Helper()
	ids, err := n.cfg.Driver.(driver.Lister).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestRunStepFake runs a step on the fake driver, whose processes run on
// the host: the output is streamed (the script waits for the test to see
// its first line), env, dir and user apply, exit status 3 is returned,
// and the sandbox is gone afterwards while Upper stays.
func TestRunStepFake(t *testing.T) {
	e := newEnv(t)
	work := t.TempDir()
	out := &syncBuffer{}
	var once sync.Once
	out.onWrite = func(all string) {
		if strings.Contains(all, "first") {
			once.Do(func() { _ = os.WriteFile(filepath.Join(work, "go"), nil, 0o644) })
		}
	}
	spec := StepSpec{
		Layers:  []string{t.TempDir()},
		Upper:   t.TempDir(),
		Args:    []string{"sh", "-c", `echo first; while [ ! -e go ]; do sleep 0.01; done; echo "$STEP_VAR $(pwd) $(id -u)"; echo err >&2; exit 3`},
		Env:     []string{"PATH=" + os.Getenv("PATH"), "STEP_VAR=v1", "STEP_VAR=v2"},
		Dir:     work,
		User:    strconv.Itoa(os.Geteuid()),
		Network: "none",
		Output:  out,
	}
	code, err := e.node.RunStep(stepCtx(t), spec)
	if err != nil || code != 3 {
		t.Fatalf("RunStep = %d, %v; want 3", code, err)
	}
	// stdout and stderr are two pipes: only lines of one are ordered.
	rest, ok := strings.CutPrefix(out.String(), "first\n")
	want := []string{"err", "v2 " + work + " " + strconv.Itoa(os.Geteuid())}
	if got := sortedLines(rest); !ok || !slices.Equal(got, want) {
		t.Errorf("output = %q, want \"first\" then lines %q", out.String(), want)
	}
	if ids := listed(t, e.node); len(ids) != 0 {
		t.Errorf("sandboxes after RunStep: %q", ids)
	}
	if _, err := os.Stat(spec.Upper); err != nil {
		t.Errorf("upper dir after RunStep: %v", err)
	}
}

// TestRunStepCancelled cancels a step while its process runs: RunStep
// returns Canceled and destroys the sandbox.
func TestRunStepCancelled(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(stepCtx(t))
	out := &syncBuffer{onWrite: func(all string) {
		if strings.Contains(all, "started") {
			cancel()
		}
	}}
	spec := StepSpec{
		Layers: []string{t.TempDir()}, Upper: t.TempDir(), Network: "none", Output: out,
		Args: []string{"sh", "-c", "echo started; exec sleep 600"},
		User: strconv.Itoa(os.Geteuid()), Dir: t.TempDir(),
	}
	code, err := e.node.RunStep(ctx, spec)
	if !errdefs.Is(err, errdefs.Canceled) || code != -1 {
		t.Fatalf("RunStep cancelled = %d, %v; want -1 and a Canceled error", code, err)
	}
	if ids := listed(t, e.node); len(ids) != 0 {
		t.Errorf("sandboxes after a cancelled RunStep: %q", ids)
	}
}

func TestRunStepInvalid(t *testing.T) {
	e := newEnv(t)
	good := StepSpec{Layers: []string{"/l"}, Upper: "/u", Args: []string{"true"}, Network: "none"}
	tests := []struct {
		name   string
		change func(*StepSpec)
		want   string
	}{
		{"no layers", func(s *StepSpec) { s.Layers = nil }, "run step: no layers"},
		{"no upper", func(s *StepSpec) { s.Upper = "" }, "run step: no upper dir"},
		{"no args", func(s *StepSpec) { s.Args = nil }, "run step: empty command"},
		{"default network", func(s *StepSpec) { s.Network = "" }, `run step: network "" is not supported (only "none")`},
		{"host network", func(s *StepSpec) { s.Network = "host" }, `run step: network "host" is not supported (only "none")`},
		{"relative dir", func(s *StepSpec) { s.Dir = "src" }, `run step: working directory "src" is not absolute`},
		{"bad env", func(s *StepSpec) { s.Env = []string{"NOVALUE"} }, `run step: env entry "NOVALUE": want K=V`},
		{"negative memory", func(s *StepSpec) { s.MemoryMB = -1 }, "run step: negative resource limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := good
			tt.change(&spec)
			_, err := e.node.RunStep(context.Background(), spec)
			if errdefs.KindOf(err) != errdefs.InvalidArgument || err == nil || err.Error() != tt.want {
				t.Errorf("RunStep = %v (kind %v), want InvalidArgument %q", err, errdefs.KindOf(err), tt.want)
			}
		})
	}
}

func TestRunStepCommandNotFound(t *testing.T) {
	e := newEnv(t)
	spec := StepSpec{
		Layers: []string{t.TempDir()}, Upper: t.TempDir(), Network: "none",
		Args: []string{"den-test-no-such-binary"}, User: strconv.Itoa(os.Geteuid()), Dir: t.TempDir(),
	}
	_, err := e.node.RunStep(stepCtx(t), spec)
	if errdefs.KindOf(err) != errdefs.InvalidArgument || !strings.Contains(err.Error(), `executable "den-test-no-such-binary" not found in PATH`) {
		t.Fatalf("RunStep of a missing binary = %v (kind %v), want InvalidArgument", err, errdefs.KindOf(err))
	}
	if ids := listed(t, e.node); len(ids) != 0 {
		t.Errorf("sandboxes after a failed RunStep: %q", ids)
	}
}

// TestRecoverDestroysStaleSteps leaves a step's sandbox behind, as a crash
// would, and checks Recover destroys it but no recorded sandbox.
func TestRecoverDestroysStaleSteps(t *testing.T) {
	e := newEnv(t)
	stale := stepIDPrefix + "0123456789ab"
	if _, err := e.drv.Create(context.Background(), driver.Spec{ID: stale, Image: driver.Image{Layers: []string{t.TempDir()}}}); err != nil {
		t.Fatal(err)
	}
	e.record("a", rest.StateStarting, "img")
	if _, err := e.node.Start(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	e.restart()
	if err := e.node.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a"}, listed(t, e.node)); diff != "" {
		t.Errorf("sandboxes after Recover (-want +got):\n%s", diff)
	}
}

func TestSignalNumber(t *testing.T) {
	for status, want := range map[string]int{
		"signal: killed":                           9,
		"signal: terminated":                       15,
		"signal: segmentation fault (core dumped)": 11,
		"signal 34":                                34,
		"exit status 1":                            0,
		"signal: no such signal":                   0,
	} {
		n, ok := signalNumber(status)
		if n != want || ok != (want > 0) {
			t.Errorf("signalNumber(%q) = %d, %v; want %d", status, n, ok, want)
		}
	}
}

// newGVisorNode is a node on the real gVisor driver, with a store but no
// records, for RunStep.
func newGVisorNode(t *testing.T) *Node {
	t.Helper()
	testenv.RequireRoot(t)
	drv, err := gvisor.New(gvisor.Config{
		RunscPath: testenv.Runsc(t), GuestBinary: testenv.GuestBinary(t),
		StateDir: t.TempDir(), CgroupParent: "den-test-node",
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drv.Close() })
	st, err := store.Open(context.Background(), store.Config{Dir: t.TempDir(), NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	n, err := New(Config{ID: "n1", Driver: drv, Images: images{}, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// TestRunStepGVisor runs a step in a real gVisor sandbox on a busybox
// image: it writes, deletes and chowns as root from a working directory
// it did not have, and exits 3; Upper then holds exactly those changes.
// A second step on top of the first runs as a user and is killed by a
// signal.
func TestRunStepGVisor(t *testing.T) {
	n := newGVisorNode(t)
	base := testenv.BusyboxRootfs(t)
	upper := t.TempDir()
	out := &syncBuffer{}
	code, err := n.RunStep(stepCtx(t), StepSpec{
		Layers: []string{base}, Upper: upper, Network: "none", Output: out,
		Args: []string{"/bin/sh", "-c", `echo "$STEP_VAR $(pwd) $(id -u)"; echo hi > /new; rm /etc/group; chown 1000:1000 /new; echo err >&2; exit 3`},
		Env:  []string{"STEP_VAR=v"},
		Dir:  "/work/dir",
	})
	if err != nil || code != 3 {
		t.Fatalf("RunStep = %d, %v (output %q); want 3", code, err, out.String())
	}
	// stdout and stderr are two pipes: their lines come in either order.
	if got := sortedLines(out.String()); !slices.Equal(got, []string{"err", "v /work/dir 0"}) {
		t.Errorf("output lines = %q, want %q and %q", got, "v /work/dir 0", "err")
	}
	want := map[string]string{
		"new":       "file 644 1000:1000",
		"etc":       "dir 755 0:0",
		"etc/group": "whiteout",
		"work":      "dir 755 0:0",
		"work/dir":  "dir 755 0:0",
	}
	if diff := cmp.Diff(want, describeTree(t, upper)); diff != "" {
		t.Errorf("upper dir (-want +got):\n%s", diff)
	}

	second := t.TempDir()
	out = &syncBuffer{}
	code, err = n.RunStep(stepCtx(t), StepSpec{
		Layers: []string{upper, base}, Upper: second, Network: "none", Output: out,
		Args: []string{"sh", "-c", `cat /new; id -u; test -e /etc/group || echo no-group; touch ~/mark; kill -9 $$`},
		User: "user",
	})
	if err != nil || code != 128+9 {
		t.Fatalf("second RunStep = %d, %v (output %q); want %d", code, err, out.String(), 128+9)
	}
	if want := "hi\n1000\nno-group\n"; out.String() != want {
		t.Errorf("second output = %q, want %q", out.String(), want)
	}
	if got := describeTree(t, second); got["home/user/mark"] != "file 644 1000:1000" {
		t.Errorf("second upper dir = %q, want home/user/mark owned by 1000", got)
	}
	if ids := listed(t, n); len(ids) != 0 {
		t.Errorf("sandboxes after the steps: %q", ids)
	}
}

func sortedLines(s string) []string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	slices.Sort(lines)
	return lines
}

// describeTree describes the entries under dir by kind, mode and owner.
func describeTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	tree := map[string]string{}
	err := filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil || path == dir {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		owner := strconv.FormatUint(uint64(st.Mode&0o7777), 8) + " " + strconv.Itoa(int(st.Uid)) + ":" + strconv.Itoa(int(st.Gid))
		switch {
		case st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0:
			tree[rel] = "whiteout"
		case st.Mode&unix.S_IFMT == unix.S_IFDIR:
			tree[rel] = "dir " + owner
		default:
			tree[rel] = "file " + owner
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return tree
}
