package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/snapshot"
	"github.com/denhq/den/internal/store"
)

// start records and starts sandbox id on image "img".
func (e *env) start(id string) *store.Sandbox {
	e.t.Helper()
	e.record(id, rest.StateStarting, "img")
	sb, err := e.node.Start(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return sb
}

// generations lists the snapshot directory of sandbox id: sealed
// generations, then unsealed ones with ".tmp".
func (e *env) generations(id string) []string {
	e.t.Helper()
	entries, err := os.ReadDir(filepath.Join(e.snaps, id))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, en := range entries {
		out = append(out, en.Name())
	}
	return out
}

// checkGuest fails the test unless sandbox id's guest agent answers.
func (e *env) checkGuest(id string) {
	e.t.Helper()
	e.processTags(id) // fails the test when the guest does not answer
}

// checkNodeErr requires err to have the kind and exact message.
func checkNodeErr(t *testing.T, err error, kind errdefs.Kind, msg string) {
	t.Helper()
	if err == nil || errdefs.KindOf(err) != kind || err.Error() != msg {
		t.Fatalf("got %v (%s), want %s %q", err, errdefs.KindOf(err), kind, msg)
	}
}

func TestSuspendResume(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.start("a")
	e.clock.Advance(20 * time.Second)

	sb, err := e.node.Suspend(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if sb.State != rest.StateSuspended || sb.Snapshot == nil || sb.Snapshot.Generation != 1 || sb.Snapshot.Size == 0 ||
		!strings.HasPrefix(sb.Snapshot.Digest, "sha256:") {
		t.Fatalf("after Suspend: %+v, snapshot %+v", sb, sb.Snapshot)
	}
	if !sb.ExpiresAt.IsZero() || sb.TimeoutLeftMs != 40_000 || !sb.SuspendedAt.Equal(e.clock.Now()) {
		t.Fatalf("timers after Suspend: expires %v, left %d ms, suspended at %v", sb.ExpiresAt, sb.TimeoutLeftMs, sb.SuspendedAt)
	}
	if diff := cmp.Diff(sb, e.get("a")); diff != "" {
		t.Fatalf("returned and stored records differ:\n%s", diff)
	}
	if st, err := e.drv.Status(ctx, "a"); err != nil || st.Running || st.Reason != driver.ReasonSuspended {
		t.Fatalf("driver status after Suspend: %+v, %v", st, err)
	}
	if got := e.generations("a"); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("snapshot dir = %v, want [1]", got)
	}
	if _, err := os.Stat(filepath.Join(e.snaps, "a", "1", snapshot.ManifestName)); err != nil {
		t.Fatal(err)
	}

	e.clock.Advance(time.Hour) // timers do not run while suspended
	sb, err = e.node.Resume(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if sb.State != rest.StateRunning || !sb.ExpiresAt.Equal(e.clock.Now().Add(40*time.Second)) || sb.TimeoutLeftMs != 0 || !sb.SuspendedAt.IsZero() {
		t.Fatalf("after Resume: state %s expires %v (now %v) left %d suspended %v", sb.State, sb.ExpiresAt, e.clock.Now(), sb.TimeoutLeftMs, sb.SuspendedAt)
	}
	e.checkGuest("a")
	if got := e.generations("a"); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("snapshot dir after Resume = %v, want [1] (kept until the next suspend)", got)
	}

	if sb, err = e.node.Suspend(ctx, "a"); err != nil || sb.Snapshot.Generation != 2 {
		t.Fatalf("second Suspend: %+v, %v", sb, err)
	}
	if got := e.generations("a"); !slices.Equal(got, []string{"2"}) {
		t.Fatalf("snapshot dir after the second suspend = %v, want [2]", got)
	}
	if err := e.node.Destroy(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if got := e.generations("a"); got != nil {
		t.Fatalf("snapshots after Destroy: %v", got)
	}
}

func TestResumeAfterTimeoutPassedStartsAFullTimeout(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.start("a")
	e.clock.Advance(2 * time.Minute) // past the 60 s timeout, as a timeout action "suspend" sees it
	if sb, err := e.node.Suspend(ctx, "a"); err != nil || sb.TimeoutLeftMs != 0 {
		t.Fatalf("Suspend: %+v, %v", sb, err)
	}
	sb, err := e.node.Resume(ctx, "a")
	if err != nil || !sb.ExpiresAt.Equal(e.clock.Now().Add(time.Minute)) {
		t.Fatalf("Resume: expires %v (now %v), %v", sb.ExpiresAt, e.clock.Now(), err)
	}
}

func TestSuspendResumeErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.start("run")
	e.start("susp")
	if _, err := e.node.Suspend(ctx, "susp"); err != nil {
		t.Fatal(err)
	}
	e.record("failed", rest.StateFailed, "img")
	tests := []struct {
		name string
		call func() error
		kind errdefs.Kind
		msg  string
	}{
		{"suspend unknown", func() error { _, err := e.node.Suspend(ctx, "nosuch"); return err },
			errdefs.NotFound, "sandbox nosuch not found"},
		{"resume unknown", func() error { _, err := e.node.Resume(ctx, "nosuch"); return err },
			errdefs.NotFound, "sandbox nosuch not found"},
		{"suspend suspended", func() error { _, err := e.node.Suspend(ctx, "susp"); return err },
			errdefs.FailedPrecondition, "sandbox susp is suspended: only a running sandbox can be suspended"},
		{"suspend failed", func() error { _, err := e.node.Suspend(ctx, "failed"); return err },
			errdefs.FailedPrecondition, "sandbox failed is failed: only a running sandbox can be suspended"},
		{"resume running", func() error { _, err := e.node.Resume(ctx, "run"); return err },
			errdefs.FailedPrecondition, "sandbox run is running: only a suspended sandbox can be resumed"},
		{"resume failed", func() error { _, err := e.node.Resume(ctx, "failed"); return err },
			errdefs.FailedPrecondition, "sandbox failed is failed: only a suspended sandbox can be resumed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkNodeErr(t, tt.call(), tt.kind, tt.msg)
		})
	}
	if sb := e.get("run"); sb.State != rest.StateRunning {
		t.Errorf("run is %s after the failed calls", sb.State)
	}
	if sb := e.get("susp"); sb.State != rest.StateSuspended {
		t.Errorf("susp is %s after the failed calls", sb.State)
	}
}

// noSuspender hides the fake's driver.Suspender.
type noSuspender struct{ driver.Driver }

func TestSuspendUnsupported(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name string
		cfg  Config
		msg  string
	}{
		{"runtime without Suspender", Config{ID: "n1", Driver: noSuspender{e.drv}, Images: images{}, Store: e.st, SnapshotDir: e.snaps},
			"runtime fake cannot suspend sandboxes"},
		{"no snapshot dir", Config{ID: "n1", Driver: e.drv, Images: images{}, Store: e.st},
			"node n1 cannot suspend sandboxes: it has no snapshot directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if n.Capabilities().Suspend {
				t.Error("Capabilities().Suspend is true")
			}
			_, err = n.Suspend(context.Background(), "a")
			checkNodeErr(t, err, errdefs.Unsupported, tt.msg)
			_, err = n.Resume(context.Background(), "a")
			checkNodeErr(t, err, errdefs.Unsupported, tt.msg)
		})
	}
	if !e.node.Capabilities().Suspend {
		t.Error("the fake with a snapshot dir does not advertise Suspend")
	}
}

func TestResumeRefusesDamagedSnapshot(t *testing.T) {
	tests := []struct {
		name   string
		damage func(dir string) error
		msg    string
	}{
		{"file corrupt", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "fake-suspend.json"), []byte(`{"bad":true}`), 0o600)
		}, `resume sandbox a: snapshot 1 of sandbox a is damaged: file "fake-suspend.json" has 12 bytes, want `},
		{"file missing", func(dir string) error { return os.Remove(filepath.Join(dir, "fake-suspend.json")) },
			`resume sandbox a: snapshot 1 of sandbox a is damaged: file "fake-suspend.json" is missing`},
		{"manifest missing", func(dir string) error { return os.Remove(filepath.Join(dir, snapshot.ManifestName)) },
			"resume sandbox a: snapshot 1 of sandbox a is damaged: manifest.json is missing"},
		{"snapshot gone", os.RemoveAll,
			"resume sandbox a: snapshot 1 of sandbox a is damaged: manifest.json is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			e.start("a")
			if _, err := e.node.Suspend(ctx, "a"); err != nil {
				t.Fatal(err)
			}
			before := e.get("a")
			dir := filepath.Join(e.snaps, "a", "1")
			if err := tt.damage(dir); err != nil {
				t.Fatal(err)
			}
			listing := e.generations("a")
			_, err := e.node.Resume(ctx, "a")
			if err == nil || errdefs.KindOf(err) != errdefs.FailedPrecondition || !strings.HasPrefix(err.Error(), tt.msg) {
				t.Fatalf("Resume of a damaged snapshot: %v (%s), want FailedPrecondition %q...", err, errdefs.KindOf(err), tt.msg)
			}
			after := e.get("a")
			if after.State != rest.StateSuspended || !cmp.Equal(after.Snapshot, before.Snapshot) {
				t.Fatalf("after a refused resume: %s, snapshot %+v", after.State, after.Snapshot)
			}
			if got := e.generations("a"); !slices.Equal(got, listing) {
				t.Fatalf("a refused resume changed the snapshot dir: %v, was %v", got, listing)
			}
			if st, _ := e.drv.Status(ctx, "a"); st.Running {
				t.Fatal("the runtime runs a sandbox whose snapshot is damaged")
			}
		})
	}
}

func TestSuspendDriverFailureKeepsRunning(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.start("a")
	e.failSuspend = func(context.Context, string, string) error { return errors.New("checkpoint failed") }
	e.restart() // the hooks are read at driver creation
	if err := e.node.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := e.node.Suspend(ctx, "a")
	if err == nil || err.Error() != "suspend sandbox a: checkpoint failed" {
		t.Fatalf("Suspend with a failing driver: %v", err)
	}
	if sb := e.get("a"); sb.State != rest.StateRunning || sb.Snapshot != nil {
		t.Fatalf("after a failed suspend: %s %+v", sb.State, sb.Snapshot)
	}
	if got := e.generations("a"); len(got) != 0 {
		t.Fatalf("a failed suspend left %v", got)
	}
	e.checkGuest("a")
}

func TestResumeDriverFailureKeepsSuspended(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.start("a")
	if _, err := e.node.Suspend(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	e.failResume = func(context.Context, driver.Spec, string) error { return errors.New("restore failed") }
	e.restart()
	if err := e.node.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := e.node.Resume(ctx, "a")
	if err == nil || err.Error() != "resume sandbox a: restore failed" {
		t.Fatalf("Resume with a failing driver: %v", err)
	}
	if sb := e.get("a"); sb.State != rest.StateSuspended || sb.Snapshot == nil {
		t.Fatalf("after a failed resume: %s %+v", sb.State, sb.Snapshot)
	}
	e.failResume = nil
	if _, err := e.node.Resume(ctx, "a"); err != nil {
		t.Fatalf("Resume once the runtime works: %v", err)
	}
	e.checkGuest("a")
}

// TestResumeRestoresFromSnapshotWhenRuntimeLostIt: the runtime no longer
// holds the suspended sandbox (its host state was removed); it stays
// suspended across a restart, and as the snapshot is its whole state, it
// comes back from it.
func TestResumeRestoresFromSnapshotWhenRuntimeLostIt(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.start("a")
	if _, err := e.node.Suspend(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := e.drv.Destroy(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	e.restart()
	if err := e.node.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if sb := e.get("a"); sb.State != rest.StateSuspended {
		t.Fatalf("after Recover: %s %q", sb.State, sb.Reason)
	}
	if sb, err := e.node.Resume(ctx, "a"); err != nil || sb.State != rest.StateRunning {
		t.Fatalf("Resume after the runtime lost the sandbox: %+v, %v", sb, err)
	}
	e.checkGuest("a")
}

func TestDeathWatchAcrossSuspend(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.start("a")
	if _, err := e.node.Suspend(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.node.Resume(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	// The suspend ended the first watcher's wait; it must not have failed
	// the sandbox, and the resume must have armed a new one.
	if sb := e.get("a"); sb.State != rest.StateRunning {
		t.Fatalf("after suspend and resume: %s %q", sb.State, sb.Reason)
	}
	if err := e.drv.Kill("a"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the resumed sandbox that died is recorded failed", func() bool { return e.get("a").State == rest.StateFailed })
}

// suspendSteps and resumeSteps are every step, in order.
var (
	suspendStepNames = []string{stepCheck, stepMarkSuspend, stepCreateDir, stepDriverSuspend, stepSeal, stepMarkSuspended, stepDropOlder}
	resumeStepNames  = []string{stepMarkResuming, stepVerify, stepDriverResume, stepMarkRunning}
)

func TestStepNamesAreComplete(t *testing.T) {
	var s, r []string
	for _, st := range (&Node{}).suspendSteps() {
		s = append(s, st.name)
	}
	for _, st := range (&Node{}).resumeSteps() {
		r = append(r, st.name)
	}
	if !slices.Equal(s, suspendStepNames) || !slices.Equal(r, resumeStepNames) {
		t.Fatalf("steps: suspend %q, resume %q", s, r)
	}
}

// TestSuspendFaultAtEachStep fails each step of a suspend in turn: the
// sandbox ends running or suspended, never lost, leaves no unsealed
// files, and works afterwards.
func TestSuspendFaultAtEachStep(t *testing.T) {
	want := map[string]string{
		stepCheck: rest.StateRunning, stepMarkSuspend: rest.StateRunning, stepCreateDir: rest.StateRunning,
		stepDriverSuspend: rest.StateRunning, stepSeal: rest.StateRunning, // resumed from the unsealed files
		stepMarkSuspended: rest.StateSuspended, stepDropOlder: rest.StateSuspended,
	}
	for _, step := range suspendStepNames {
		t.Run(step, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			e.start("a")
			e.node.beforeStep = func(op, s string) error {
				if op == "suspend" && s == step {
					return errors.New("injected")
				}
				return nil
			}
			_, err := e.node.Suspend(ctx, "a")
			if err == nil || !strings.Contains(err.Error(), "injected") {
				t.Fatalf("Suspend with a fault before %q: %v", step, err)
			}
			e.node.beforeStep = nil
			e.checkUsable("a", want[step])
		})
	}
}

// checkUsable requires sandbox id to be in state want with no unsealed
// snapshot, and to go through a suspend and a resume (from running) or a
// resume (from suspended) with a working guest at the end.
func (e *env) checkUsable(id, want string) {
	e.t.Helper()
	ctx := context.Background()
	sb := e.get(id)
	if sb.State != want {
		e.t.Fatalf("state %s (%q), want %s", sb.State, sb.Reason, want)
	}
	for _, g := range e.generations(id) {
		if strings.HasSuffix(g, ".tmp") {
			e.t.Fatalf("unsealed snapshot left: %v", e.generations(id))
		}
	}
	if want == rest.StateRunning {
		e.checkGuest(id)
		if _, err := e.node.Suspend(ctx, id); err != nil {
			e.t.Fatalf("Suspend afterwards: %v", err)
		}
	}
	if _, err := e.node.Resume(ctx, id); err != nil {
		e.t.Fatalf("Resume afterwards: %v", err)
	}
	e.checkGuest(id)
	if sb := e.get(id); sb.State != rest.StateRunning || len(e.generations(id)) != 1 {
		e.t.Fatalf("after suspend and resume: %s, snapshots %v", sb.State, e.generations(id))
	}
}

// crash is the panic that stands for den dying in the middle of a step.
type crash struct{ step string }

// crashAt runs call with the node crashing (a panic, nothing undone)
// before step of op, then restarts den over the same state and recovers.
func (e *env) crashAt(op, step string, call func() error) {
	e.t.Helper()
	e.node.beforeStep = func(o, s string) error {
		if o == op && s == step {
			panic(crash{step})
		}
		return nil
	}
	func() {
		defer func() {
			if r := recover(); r == nil {
				e.t.Fatalf("%s did not reach step %q", op, step)
			} else if _, ok := r.(crash); !ok {
				panic(r)
			}
		}()
		_ = call()
	}()
	e.restart()
	if err := e.node.Recover(context.Background()); err != nil {
		e.t.Fatalf("Recover after a crash before %s step %q: %v", op, step, err)
	}
}

// TestCrashAtEachSuspendStep kills den before each step of a suspend (and
// the one before it resumed once, so an older snapshot exists) and
// restarts it: Recover settles the sandbox running or suspended, never
// lost, and it works afterwards.
func TestCrashAtEachSuspendStep(t *testing.T) {
	want := map[string]string{
		stepCheck: rest.StateRunning, stepMarkSuspend: rest.StateRunning, stepCreateDir: rest.StateRunning,
		stepDriverSuspend: rest.StateRunning,
		stepSeal:          rest.StateSuspended, // the runtime's files are sealed at recovery
		stepMarkSuspended: rest.StateSuspended, stepDropOlder: rest.StateSuspended,
	}
	for _, step := range suspendStepNames {
		t.Run(step, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			e.start("a")
			if _, err := e.node.Suspend(ctx, "a"); err != nil {
				t.Fatal(err)
			}
			if _, err := e.node.Resume(ctx, "a"); err != nil {
				t.Fatal(err)
			}
			e.crashAt("suspend", step, func() error { _, err := e.node.Suspend(ctx, "a"); return err })
			e.checkUsable("a", want[step])
		})
	}
}

// TestCrashAtEachResumeStep kills den before each step of a resume.
func TestCrashAtEachResumeStep(t *testing.T) {
	want := map[string]string{
		stepMarkResuming: rest.StateSuspended, stepVerify: rest.StateSuspended,
		stepDriverResume: rest.StateSuspended,
		stepMarkRunning:  rest.StateRunning, // the runtime runs it under the record's handle
	}
	for _, step := range resumeStepNames {
		t.Run(step, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			e.start("a")
			if _, err := e.node.Suspend(ctx, "a"); err != nil {
				t.Fatal(err)
			}
			e.crashAt("resume", step, func() error { _, err := e.node.Resume(ctx, "a"); return err })
			e.checkUsable("a", want[step])
		})
	}
}

// TestRecoverSuspendingWithoutState: den died during a suspend whose
// runtime stopped the sandbox without saving it (its process is gone):
// the sandbox is failed with the reason, not silently rolled back.
func TestRecoverSuspendingWithoutState(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.start("a")
	e.crashAt("suspend", stepDriverSuspend, func() error { _, err := e.node.Suspend(ctx, "a"); return err })
	// That left it running; now make it a suspend whose runtime died.
	if _, err := e.node.setState(ctx, "a", func(s *store.Sandbox) { s.State = rest.StateSuspending }); err != nil {
		t.Fatal(err)
	}
	e.node.Close()
	if err := e.drv.Kill("a"); err != nil {
		t.Fatal(err)
	}
	e.restart()
	if err := e.node.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if sb := e.get("a"); sb.State != rest.StateFailed || sb.Reason != reasonSuspendLost {
		t.Fatalf("state %s reason %q", sb.State, sb.Reason)
	}
}

// TestRecoverRemovesOrphanSnapshots: snapshots of sandboxes without a
// record go at recovery, those of suspended ones stay.
func TestRecoverRemovesOrphanSnapshots(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.start("a")
	if _, err := e.node.Suspend(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	orphan := filepath.Join(e.snaps, "gone", "3")
	if err := os.MkdirAll(orphan, 0o700); err != nil {
		t.Fatal(err)
	}
	e.restart()
	if err := e.node.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(orphan)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("orphan snapshot dir: %v", err)
	}
	if got := e.generations("a"); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("suspended sandbox's snapshots after Recover: %v", got)
	}
	if sb := e.get("a"); sb.State != rest.StateSuspended {
		t.Fatalf("suspended sandbox is %s after Recover", sb.State)
	}
}

// TestConcurrentSuspendResume runs suspends and resumes of one sandbox
// from many goroutines: each either succeeds or fails cleanly with
// FailedPrecondition, and the sandbox ends usable.
func TestConcurrentSuspendResume(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.start("a")
	errs := make(chan error, 20)
	for i := range 20 {
		go func() {
			var err error
			if i%2 == 0 {
				_, err = e.node.Suspend(ctx, "a")
			} else {
				_, err = e.node.Resume(ctx, "a")
			}
			errs <- err
		}()
	}
	for range 20 {
		if err := <-errs; err != nil && !errdefs.Is(err, errdefs.FailedPrecondition) {
			t.Errorf("concurrent call: %v", err)
		}
	}
	sb := e.get("a")
	if sb.State != rest.StateRunning && sb.State != rest.StateSuspended {
		t.Fatalf("state %s", sb.State)
	}
	e.checkUsable("a", sb.State)
}
