package store

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/denhq/den/internal/errdefs"
)

var equateEmpty = cmpopts.EquateEmpty()

// base is a fixed creation time so tests are reproducible.
var base = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openAt opens a Store in dir; the caller closes it.
func openAt(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(testCtx(t), Config{Dir: dir, NodeID: "node-1"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// openTest opens a Store in a fresh dir, closed at cleanup.
func openTest(t testing.TB) *Store {
	t.Helper()
	s := openAt(t, t.TempDir())
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func newSandbox(id, tenant, name string, created time.Time) *Sandbox {
	return &Sandbox{ID: id, Tenant: tenant, Name: name, State: StatePending, CreatedAt: created}
}

func mustCreate(t testing.TB, s *Store, sb *Sandbox) {
	t.Helper()
	if err := s.CreateSandbox(testCtx(t), sb); err != nil {
		t.Fatalf("CreateSandbox(%s): %v", sb.ID, err)
	}
}

// wantErr checks err's kind and exact message.
func wantErr(t *testing.T, err error, kind errdefs.Kind, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want %s %q", kind, msg)
	}
	if got := errdefs.KindOf(err); got != kind || err.Error() != msg {
		t.Fatalf("got %s %q, want %s %q", got, err.Error(), kind, msg)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		msg  string
	}{
		{"no dir", Config{NodeID: "n"}, "open store: store config: Dir is required"},
		{"no node id", Config{Dir: "x"}, "open store: store config: NodeID is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(testCtx(t), tt.cfg)
			wantErr(t, err, errdefs.InvalidArgument, tt.msg)
		})
	}
}

func TestSandboxRoundTrip(t *testing.T) {
	s := openTest(t)
	sb := &Sandbox{
		ID: "sb-1", Name: "web", Tenant: "acme", Image: "base",
		State: StateRunning, Reason: "ok", Runtime: "gvisor", Node: "n1",
		CPUs: 1.5, MemoryMB: 512, DiskMB: 2048,
		Env: map[string]string{"A": "1"}, Metadata: map[string]string{"team": "x"},
		TimeoutSec: 300,
		CreatedAt:  base, StartedAt: base.Add(time.Second), ExpiresAt: base.Add(time.Hour),
		Handle: []byte(`{"pid":42}`),
	}
	mustCreate(t, s, sb)
	if sb.ModifyIndex == 0 {
		t.Fatal("CreateSandbox left ModifyIndex 0")
	}
	got, err := s.Snapshot().Sandbox("sb-1")
	if err != nil {
		t.Fatalf("Sandbox: %v", err)
	}
	if d := cmp.Diff(sb, got); d != "" {
		t.Fatalf("stored sandbox differs (-want +got):\n%s", d)
	}

	// Returned objects are copies: mutating one changes nothing stored.
	got.Env["A"] = "changed"
	got.Handle[2] = 'X'
	again, _ := s.Snapshot().Sandbox("sb-1")
	if d := cmp.Diff(sb, again); d != "" {
		t.Fatalf("mutating a returned sandbox changed the store:\n%s", d)
	}
}

func TestCreateSandboxDefaults(t *testing.T) {
	s := openTest(t)
	sb := &Sandbox{ID: "sb-1", Tenant: "acme"}
	mustCreate(t, s, sb)
	if sb.State != StatePending || sb.CreatedAt.IsZero() {
		t.Fatalf("defaults not applied: state %q created %v", sb.State, sb.CreatedAt)
	}
}

func TestCreateSandboxErrors(t *testing.T) {
	s := openTest(t)
	mustCreate(t, s, newSandbox("sb-1", "acme", "web", base))
	done := newSandbox("sb-2", "acme", "old", base)
	done.State = StateTerminated
	mustCreate(t, s, done)

	tests := []struct {
		name string
		sb   *Sandbox
		kind errdefs.Kind
		msg  string
	}{
		{"duplicate id", newSandbox("sb-1", "acme", "", base),
			errdefs.AlreadyExists, "sandbox sb-1 already exists"},
		{"name taken", newSandbox("sb-3", "acme", "web", base),
			errdefs.AlreadyExists, `sandbox name "web" is taken by sandbox sb-1`},
		{"no id", newSandbox("", "acme", "", base),
			errdefs.InvalidArgument, "create sandbox: sandbox id is required"},
		{"no tenant", newSandbox("sb-4", "", "", base),
			errdefs.InvalidArgument, "create sandbox: sandbox sb-4: tenant is required"},
		{"bad state", &Sandbox{ID: "sb-5", Tenant: "acme", State: "dancing"},
			errdefs.InvalidArgument, `create sandbox: sandbox sb-5: unknown state "dancing"`},
		{"bad handle", &Sandbox{ID: "sb-6", Tenant: "acme", Handle: []byte("{")},
			errdefs.InvalidArgument, "create sandbox: sandbox sb-6: handle is not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, s.CreateSandbox(testCtx(t), tt.sb), tt.kind, tt.msg)
		})
	}

	ok := []struct {
		name string
		sb   *Sandbox
	}{
		{"name of a terminal sandbox", newSandbox("sb-7", "acme", "old", base)},
		{"same name other tenant", newSandbox("sb-8", "other", "web", base)},
		{"terminal sandbox with a taken name", &Sandbox{ID: "sb-9", Tenant: "acme", Name: "web", State: StateFailed}},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) { mustCreate(t, s, tt.sb) })
	}

	got, err := s.Snapshot().SandboxByName("acme", "old")
	if err != nil || got.ID != "sb-7" {
		t.Fatalf("SandboxByName prefers the live sandbox: got %v, %v", got, err)
	}
	_, err = s.Snapshot().SandboxByName("acme", "nope")
	wantErr(t, err, errdefs.NotFound, `sandbox named "nope" not found`)
}

func TestUpdateSandboxCAS(t *testing.T) {
	s := openTest(t)
	ctx := testCtx(t)
	mustCreate(t, s, newSandbox("sb-1", "acme", "web", base))
	mustCreate(t, s, newSandbox("sb-2", "acme", "db", base))

	a, _ := s.Snapshot().Sandbox("sb-1")
	b, _ := s.Snapshot().Sandbox("sb-1") // a second reader of the same version
	before := a.ModifyIndex
	a.State, a.Node = StateRunning, "n1"
	if err := s.UpdateSandbox(ctx, a); err != nil {
		t.Fatalf("UpdateSandbox: %v", err)
	}
	if a.ModifyIndex <= before {
		t.Fatalf("ModifyIndex %d not advanced past %d", a.ModifyIndex, before)
	}
	got, _ := s.Snapshot().Sandbox("sb-1")
	if d := cmp.Diff(a, got, equateEmpty); d != "" {
		t.Fatalf("updated sandbox differs:\n%s", d)
	}

	b.State = StateFailed
	wantErr(t, s.UpdateSandbox(ctx, b), errdefs.Conflict,
		fmt.Sprintf("sandbox sb-1 was modified: index %d, expected %d", a.ModifyIndex, before))

	wantErr(t, s.UpdateSandbox(ctx, newSandbox("nope", "acme", "", base)),
		errdefs.NotFound, "sandbox nope not found")

	c, _ := s.Snapshot().Sandbox("sb-2")
	c.Name = "web"
	wantErr(t, s.UpdateSandbox(ctx, c), errdefs.AlreadyExists,
		`sandbox name "web" is taken by sandbox sb-1`)
}

func TestDeleteSandbox(t *testing.T) {
	s := openTest(t)
	ctx := testCtx(t)
	mustCreate(t, s, newSandbox("sb-1", "acme", "web", base))
	if err := s.DeleteSandbox(ctx, "sb-1"); err != nil {
		t.Fatalf("DeleteSandbox: %v", err)
	}
	_, err := s.Snapshot().Sandbox("sb-1")
	wantErr(t, err, errdefs.NotFound, "sandbox sb-1 not found")
	wantErr(t, s.DeleteSandbox(ctx, "sb-1"), errdefs.NotFound, "sandbox sb-1 not found")
	// The name is free again.
	mustCreate(t, s, newSandbox("sb-2", "acme", "web", base))
}

func TestAPIKeys(t *testing.T) {
	s := openTest(t)
	ctx := testCtx(t)
	k1 := &APIKey{ID: "k1", Tenant: "acme", Name: "ci", Hash: "h1", CreatedAt: base}
	k2 := &APIKey{ID: "k2", Tenant: "acme", Hash: "h2", Admin: true, CreatedAt: base}
	k3 := &APIKey{ID: "k3", Tenant: "other", Hash: "h3", CreatedAt: base}
	for _, k := range []*APIKey{k2, k1, k3} {
		if err := s.PutAPIKey(ctx, k); err != nil {
			t.Fatalf("PutAPIKey(%s): %v", k.ID, err)
		}
	}
	sn := s.Snapshot()
	got, err := sn.APIKeyByHash("h2")
	if err != nil || !cmp.Equal(got, k2) {
		t.Fatalf("APIKeyByHash(h2) = %+v, %v; want %+v", got, err, k2)
	}
	_, err = sn.APIKeyByHash("nope")
	wantErr(t, err, errdefs.NotFound, "api key not found")
	if d := cmp.Diff([]*APIKey{k1, k2}, sn.APIKeys("acme")); d != "" {
		t.Fatalf("APIKeys(acme):\n%s", d)
	}
	if n := len(sn.APIKeys("")); n != 3 {
		t.Fatalf("APIKeys(\"\") returned %d keys, want 3", n)
	}

	wantErr(t, s.PutAPIKey(ctx, &APIKey{ID: "k4", Tenant: "acme", Hash: "h1"}),
		errdefs.AlreadyExists, "api key hash is already used by key k1")
	wantErr(t, s.PutAPIKey(ctx, &APIKey{ID: "k5"}),
		errdefs.InvalidArgument, "put api key: id and hash are required")

	if err := s.DeleteAPIKey(ctx, "k1"); err != nil {
		t.Fatalf("DeleteAPIKey: %v", err)
	}
	wantErr(t, s.DeleteAPIKey(ctx, "k1"), errdefs.NotFound, "api key k1 not found")
	if _, err := s.Snapshot().APIKeyByHash("h1"); !errdefs.IsNotFound(err) {
		t.Fatalf("deleted key still found by hash: %v", err)
	}
}

func TestSnapshotIsolation(t *testing.T) {
	s := openTest(t)
	ctx := testCtx(t)
	mustCreate(t, s, newSandbox("sb-1", "acme", "", base))
	before := s.Snapshot()
	changed := before.SandboxesChanged()

	mustCreate(t, s, newSandbox("sb-2", "acme", "", base))
	sb, _ := s.Snapshot().Sandbox("sb-1")
	sb.State = StateRunning
	if err := s.UpdateSandbox(ctx, sb); err != nil {
		t.Fatalf("UpdateSandbox: %v", err)
	}

	if _, err := before.Sandbox("sb-2"); !errdefs.IsNotFound(err) {
		t.Fatalf("old snapshot sees a later create: %v", err)
	}
	old, _ := before.Sandbox("sb-1")
	if old.State != StatePending {
		t.Fatalf("old snapshot sees a later update: state %q", old.State)
	}
	select {
	case <-changed:
	default:
		t.Fatal("SandboxesChanged not closed after a write")
	}
}

func TestWatch(t *testing.T) {
	s := openTest(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	ch := s.Watch(ctx)
	mustCreate(t, s, newSandbox("sb-1", "acme", "", base))
	if _, ok := <-ch; !ok {
		t.Fatal("watch closed before signalling")
	}
	cancel()
	for range ch { // drain a pending signal; ends when the watcher exits
	}
}

func TestWatchClosedByClose(t *testing.T) {
	s := openAt(t, t.TempDir())
	ch := s.Watch(testCtx(t))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range ch {
	}
	if _, ok := <-s.Watch(testCtx(t)); ok {
		t.Fatal("Watch after Close returned an open channel")
	}
}

func TestWriteAfterClose(t *testing.T) {
	s := openAt(t, t.TempDir())
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	wantErr(t, s.CreateSandbox(testCtx(t), newSandbox("sb-1", "acme", "", base)),
		errdefs.Unavailable, "create_sandbox: store is closed")
}

func TestConcurrentWriters(t *testing.T) {
	s := openTest(t)
	const writers, each = 20, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("sb-%02d-%d", w, i)
				errs <- s.CreateSandbox(testCtx(t), newSandbox(id, "acme", id, base))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("CreateSandbox: %v", err)
		}
	}
	all, _, err := s.Snapshot().Sandboxes(SandboxFilter{})
	if err != nil {
		t.Fatalf("Sandboxes: %v", err)
	}
	last := s.raft.LastIndex()
	for _, sb := range all {
		// Writes that queued together share an entry (batch.go), so
		// indexes repeat across records; each is a committed entry.
		if sb.ModifyIndex == 0 || sb.ModifyIndex > last {
			t.Fatalf("sandbox %s has ModifyIndex %d, not an entry of the log (last %d)", sb.ID, sb.ModifyIndex, last)
		}
	}
	if len(all) != writers*each {
		t.Fatalf("got %d sandboxes, want %d", len(all), writers*each)
	}
}

// populate writes n sandboxes and a key, returning what a reader should see.
func populate(t *testing.T, s *Store, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		sb := newSandbox(fmt.Sprintf("sb-%03d", i), "acme", fmt.Sprintf("n%d", i), base.Add(time.Duration(i)))
		sb.Metadata = map[string]string{"i": fmt.Sprint(i)}
		mustCreate(t, s, sb)
	}
	if err := s.PutAPIKey(testCtx(t), &APIKey{ID: fmt.Sprintf("k%d", from), Tenant: "acme", Hash: fmt.Sprintf("h%d", from), CreatedAt: base}); err != nil {
		t.Fatalf("PutAPIKey: %v", err)
	}
}

// dump is the whole state in comparable form.
func dump(t *testing.T, sn *Snapshot) ([]*Sandbox, []*APIKey) {
	t.Helper()
	sbs, _, err := sn.Sandboxes(SandboxFilter{})
	if err != nil {
		t.Fatalf("Sandboxes: %v", err)
	}
	return sbs, sn.APIKeys("")
}

func checkSameState(t *testing.T, want, got *Snapshot) {
	t.Helper()
	ws, wk := dump(t, want)
	gs, gk := dump(t, got)
	if d := cmp.Diff(ws, gs, equateEmpty); d != "" {
		t.Fatalf("sandboxes differ (-want +got):\n%s", d)
	}
	if d := cmp.Diff(wk, gk, equateEmpty); d != "" {
		t.Fatalf("api keys differ (-want +got):\n%s", d)
	}
}

func TestReopenRecovers(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir)
	populate(t, s, 0, 5)
	// A raft snapshot, then more log: recovery must restore the snapshot
	// and replay the entries after it.
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatalf("raft snapshot: %v", err)
	}
	populate(t, s, 5, 5)
	sb, _ := s.Snapshot().Sandbox("sb-002")
	if err := s.DeleteSandbox(testCtx(t), sb.ID); err != nil {
		t.Fatalf("DeleteSandbox: %v", err)
	}
	want := s.Snapshot()
	lastIndex := s.raft.LastIndex()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s2 := openAt(t, dir)
	defer s2.Close()
	checkSameState(t, want, s2.Snapshot())
	// Writes continue past the old log, never reusing an index.
	sb = newSandbox("sb-new", "acme", "", base)
	mustCreate(t, s2, sb)
	if sb.ModifyIndex <= lastIndex {
		t.Fatalf("new write got index %d, not past %d", sb.ModifyIndex, lastIndex)
	}
}

// TestCrashRecovers simulates kill -9: the directory is copied while the
// store is open and idle (bolt commits are fsynced, so the copy is what a
// crash would leave), then a second store opens the copy without the first
// ever closing it.
func TestCrashRecovers(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir)
	defer s.Close()
	populate(t, s, 0, 10)
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatalf("raft snapshot: %v", err)
	}
	populate(t, s, 10, 3)
	crashed := filepath.Join(t.TempDir(), "crashed")
	copyDir(t, dir, crashed)

	s2 := openAt(t, crashed)
	defer s2.Close()
	checkSameState(t, s.Snapshot(), s2.Snapshot())
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		return copyFile(path, target)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func TestOpenCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Open(ctx, Config{Dir: t.TempDir(), NodeID: "node-1"})
	if errdefs.KindOf(err) != errdefs.Unavailable || !strings.Contains(err.Error(), "wait for leadership") {
		t.Fatalf("Open with a canceled ctx: got %v, want Unavailable during wait for leadership", err)
	}
}

// BenchmarkCreateSandbox measures one raft apply: encode, append to the
// bolt log with fsync, commit as the lone voter, apply to the FSM.
func BenchmarkCreateSandbox(b *testing.B) {
	s := openTest(b)
	ctx := testCtx(b)
	b.ResetTimer()
	for i := range b.N {
		sb := newSandbox(fmt.Sprintf("sb-%d", i), "acme", "", base)
		if err := s.CreateSandbox(ctx, sb); err != nil {
			b.Fatal(err)
		}
	}
}

// The reaper's indexes: EachExpired visits the running sandboxes whose
// timeout passed, oldest expiry first, and stops at the first that has
// not; EachIdleTimed visits the running ones with an idle timeout. A
// sandbox leaves both when it stops running and follows a new expiry.
func TestTimerIndexes(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	now := base.Add(time.Hour)
	for _, c := range []struct {
		id, state string
		expires   time.Duration // from now; 0: no timeout
		idle      int64
	}{
		{"a", StateRunning, -time.Minute, 0},
		{"b", StateRunning, -time.Hour, 30},
		{"c", StateRunning, time.Minute, 0},       // not yet expired
		{"d", StateSuspended, -2 * time.Hour, 30}, // timers stop while suspended
		{"e", StateRunning, 0, 10},
		{"f", StatePending, -time.Hour, 10},
		{"g", StateRunning, -time.Second, 0},
	} {
		sb := newSandbox(c.id, "t", "", base)
		sb.State, sb.IdleTimeoutSec = c.state, c.idle
		if c.expires != 0 {
			sb.ExpiresAt = now.Add(c.expires)
		}
		mustCreate(t, s, sb)
	}
	expired := func() []string {
		var ids []string
		if err := s.Snapshot().EachExpired(now, func(sb *Sandbox) bool { ids = append(ids, sb.ID); return true }); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	idle := func() []string {
		var ids []string
		if err := s.Snapshot().EachIdleTimed(func(sb *Sandbox) bool { ids = append(ids, sb.ID); return true }); err != nil {
			t.Fatal(err)
		}
		slices.Sort(ids)
		return ids
	}
	if got := expired(); !slices.Equal(got, []string{"b", "a", "g"}) {
		t.Fatalf("expired %v, want b a g (by expiry)", got)
	}
	if got := idle(); !slices.Equal(got, []string{"b", "e"}) {
		t.Fatalf("idle-timed %v, want b e", got)
	}
	n := 0
	s.Snapshot().EachExpired(now, func(*Sandbox) bool { n++; return n < 2 })
	if n != 2 {
		t.Fatalf("visited %d after asking to stop at 2", n)
	}

	// b is suspended, a's timeout moves past now, c's before it.
	for id, change := range map[string]func(*Sandbox){
		"b": func(sb *Sandbox) { sb.State = StateSuspended },
		"a": func(sb *Sandbox) { sb.ExpiresAt = now.Add(time.Hour) },
		"c": func(sb *Sandbox) { sb.ExpiresAt = now.Add(-3 * time.Hour) },
	} {
		sb, err := s.Snapshot().Sandbox(id)
		if err != nil {
			t.Fatal(err)
		}
		change(sb)
		if err := s.UpdateSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteSandbox(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	if got := expired(); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("expired after the changes %v, want c", got)
	}
	if got := idle(); !slices.Equal(got, []string{"e"}) {
		t.Fatalf("idle-timed after the changes %v, want e", got)
	}
	sn := s.Snapshot()
	for id, want := range map[string]bool{"a": true, "b": false, "e": true, "f": false, "g": false, "nope": false} {
		if got := sn.SandboxRunning(id); got != want {
			t.Errorf("SandboxRunning(%s) = %v, want %v", id, got, want)
		}
	}
}
