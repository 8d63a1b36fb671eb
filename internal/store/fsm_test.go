package store

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"

	"github.com/denhq/den/internal/errdefs"
)

// testFSM drives an fsm directly, without raft, for tests of the FSM and of
// reads over many records.
type testFSM struct {
	*fsm
	index uint64
}

func newTestFSM(t *testing.T) *testFSM {
	t.Helper()
	f, err := newFSM(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return &testFSM{fsm: f}
}

func (f *testFSM) apply(t *testing.T, ct cmdType, body any) *applyResult {
	t.Helper()
	data, err := encodeCmd(ct, body)
	if err != nil {
		t.Fatal(err)
	}
	f.index++
	return f.Apply(&raft.Log{Index: f.index, Type: raft.LogCommand, Data: data}).(*applyResult)
}

func (f *testFSM) create(t *testing.T, sb *Sandbox) {
	t.Helper()
	if res := f.apply(t, cmdCreateSandbox, sandboxCmd{Sandbox: sb.Clone()}); res.Err != nil {
		t.Fatalf("create %s: %v", sb.ID, res.Err)
	}
}

func (f *testFSM) snapshot() *Snapshot { return &Snapshot{db: f.db.Snapshot()} }

func TestSandboxesFilter(t *testing.T) {
	f := newTestFSM(t)
	mk := func(id, tenant, state, node string, md map[string]string, at int) {
		sb := newSandbox(id, tenant, "", base.Add(time.Duration(at)*time.Second))
		sb.State, sb.Node, sb.Metadata = state, node, md
		f.create(t, sb)
	}
	mk("a", "acme", StateRunning, "n1", map[string]string{"env": "prod", "team": "x"}, 3)
	mk("b", "acme", StatePending, "", map[string]string{"env": "dev"}, 2)
	mk("c", "acme", StateTerminated, "n2", nil, 1)
	mk("d", "other", StateRunning, "n1", map[string]string{"env": "prod"}, 0)
	mk("e", "acme", StateRunning, "n2", map[string]string{"env": "prod"}, 3) // same time as a: ID breaks the tie

	tests := []struct {
		name string
		f    SandboxFilter
		want []string
	}{
		{"all, by creation", SandboxFilter{}, []string{"d", "c", "b", "a", "e"}},
		{"tenant", SandboxFilter{Tenant: "acme"}, []string{"c", "b", "a", "e"}},
		{"states", SandboxFilter{States: []string{StateRunning, StatePending}}, []string{"d", "b", "a", "e"}},
		{"metadata", SandboxFilter{Metadata: map[string]string{"env": "prod"}}, []string{"d", "a", "e"}},
		{"metadata all of", SandboxFilter{Metadata: map[string]string{"env": "prod", "team": "x"}}, []string{"a"}},
		{"node", SandboxFilter{Node: "n1"}, []string{"d", "a"}},
		{"combined", SandboxFilter{Tenant: "acme", States: []string{StateRunning}, Node: "n2"}, []string{"e"}},
		{"no match", SandboxFilter{Tenant: "nobody"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, next, err := f.snapshot().Sandboxes(tt.f)
			if err != nil {
				t.Fatalf("Sandboxes: %v", err)
			}
			if next != "" {
				t.Fatalf("unexpected next token %q", next)
			}
			if d := cmp.Diff(tt.want, ids(got)); d != "" {
				t.Fatalf("ids (-want +got):\n%s", d)
			}
		})
	}
}

func ids(sbs []*Sandbox) []string {
	var out []string
	for _, sb := range sbs {
		out = append(out, sb.ID)
	}
	return out
}

func TestSandboxesPagination(t *testing.T) {
	f := newTestFSM(t)
	type rec struct {
		bucket int
		id     string
	}
	var recs []rec
	for i := range 250 {
		// Ten share each creation time, so the ID must order within it.
		id := fmt.Sprintf("sb-%03d", 249-i)
		sb := newSandbox(id, "acme", "", base.Add(time.Duration(i/10)*time.Millisecond))
		f.create(t, sb)
		f.create(t, newSandbox("x-"+id, "other", "", sb.CreatedAt)) // interleaved noise
		recs = append(recs, rec{i / 10, id})
	}
	slices.SortFunc(recs, func(a, b rec) int {
		if a.bucket != b.bucket {
			return a.bucket - b.bucket
		}
		return strings.Compare(a.id, b.id)
	})
	var want []string
	for _, r := range recs {
		want = append(want, r.id)
	}

	got, pages := listAll(t, f.snapshot(), SandboxFilter{Tenant: "acme", Limit: 100})
	if pages != 3 {
		t.Fatalf("got %d pages, want 3", pages)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("paged listing (-want +got):\n%s", d)
	}

	// Without a tenant the other index is walked: 500 records, 5 pages.
	all, pages := listAll(t, f.snapshot(), SandboxFilter{Limit: 100})
	seen := map[string]bool{}
	for _, id := range all {
		seen[id] = true
	}
	if pages != 5 || len(all) != 500 || len(seen) != 500 {
		t.Fatalf("got %d records (%d distinct) in %d pages, want 500 in 5", len(all), len(seen), pages)
	}
}

// listAll follows page tokens to the end, returning the IDs and page count.
func listAll(t *testing.T, sn *Snapshot, f SandboxFilter) ([]string, int) {
	t.Helper()
	var got []string
	for pages := 1; ; pages++ {
		page, next, err := sn.Sandboxes(f)
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		if len(page) > f.Limit {
			t.Fatalf("page %d has %d records, limit %d", pages, len(page), f.Limit)
		}
		got = append(got, ids(page)...)
		if next == "" {
			return got, pages
		}
		f.PageToken = next
	}
}

func TestSandboxesBadInput(t *testing.T) {
	sn := newTestFSM(t).snapshot()
	tests := []struct {
		name string
		f    SandboxFilter
		msg  string
	}{
		{"garbage token", SandboxFilter{PageToken: "!!!"}, "list sandboxes: invalid page token"},
		{"not json", SandboxFilter{PageToken: base64.RawURLEncoding.EncodeToString([]byte("x"))}, "list sandboxes: invalid page token"},
		{"no id", SandboxFilter{PageToken: base64.RawURLEncoding.EncodeToString([]byte(`{"t":"2025-01-01T00:00:00Z"}`))}, "list sandboxes: invalid page token"},
		{"negative limit", SandboxFilter{Limit: -1}, "list sandboxes: limit must not be negative, got -1"},
		{"unknown state", SandboxFilter{States: []string{"asleep"}}, `list sandboxes: unknown state "asleep"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := sn.Sandboxes(tt.f)
			wantErr(t, err, errdefs.InvalidArgument, tt.msg)
		})
	}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	canceled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.canceled = true; return nil }
func (s *memSink) Close() error  { return nil }

func TestFSMSnapshotRestore(t *testing.T) {
	src := newTestFSM(t)
	for i := range 20 {
		sb := newSandbox(fmt.Sprintf("sb-%02d", i), "acme", fmt.Sprintf("n%d", i), base.Add(time.Duration(i)))
		sb.Env = map[string]string{"K": "V"}
		sb.Handle = []byte(`{"x":1}`)
		src.create(t, sb)
	}
	src.apply(t, cmdPutAPIKey, apiKeyCmd{Key: &APIKey{ID: "k1", Tenant: "acme", Hash: "h1", Admin: true, CreatedAt: base}})

	snap, err := src.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	// Writes after Snapshot must not leak into what Persist writes.
	src.create(t, newSandbox("late", "acme", "", base))
	var sink memSink
	if err := snap.Persist(&sink); err != nil || sink.canceled {
		t.Fatalf("Persist: %v (canceled %v)", err, sink.canceled)
	}
	snap.Release()

	dst := newTestFSM(t)
	dst.create(t, newSandbox("stale", "acme", "", base)) // Restore replaces everything
	changed := dst.snapshot().SandboxesChanged()
	if err := dst.Restore(readCloser{&sink}); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Restore did not fire SandboxesChanged")
	}

	want, _, _ := src.snapshot().Sandboxes(SandboxFilter{})
	want = slices.DeleteFunc(want, func(sb *Sandbox) bool { return sb.ID == "late" })
	got, _, _ := dst.snapshot().Sandboxes(SandboxFilter{})
	if d := cmp.Diff(want, got, equateEmpty); d != "" {
		t.Fatalf("restored sandboxes (-want +got):\n%s", d)
	}
	if d := cmp.Diff(src.snapshot().APIKeys(""), dst.snapshot().APIKeys("")); d != "" {
		t.Fatalf("restored keys (-want +got):\n%s", d)
	}
	// Indexes are rebuilt too.
	if _, err := dst.snapshot().SandboxByName("acme", "n3"); err != nil {
		t.Fatalf("name index after restore: %v", err)
	}
	// The applied index travels with the snapshot: a follower restored
	// from it knows which forwarded writes it holds (not "late").
	srcApplied, _ := src.appliedIndex()
	got2, _ := dst.appliedIndex()
	if want := srcApplied - 1; got2 != want {
		t.Fatalf("applied index after restore = %d, want %d (the snapshot's)", got2, want)
	}
}

type readCloser struct{ *memSink }

func (readCloser) Close() error { return nil }

func TestFSMRejectsUnknownCommands(t *testing.T) {
	f := newTestFSM(t)
	tests := []struct {
		name string
		data []byte
		msg  string
	}{
		{"short", []byte{1}, "decode command: short entry (1 bytes)"},
		{"future version", []byte{9, 1, '{', '}'}, "decode command: unknown format version 9"},
		{"unknown type", []byte{cmdVersion, 200, '{', '}'}, "apply: unknown command type 200"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := f.Apply(&raft.Log{Index: uint64(i + 1), Data: tt.data}).(*applyResult)
			wantErr(t, res.Err, errdefs.Internal, tt.msg)
		})
	}
}

func TestFSMIgnoresUnknownFields(t *testing.T) {
	f := newTestFSM(t)
	data := append([]byte{cmdVersion, byte(cmdCreateSandbox)},
		`{"sandbox":{"id":"sb-1","tenant":"acme","state":"pending","future_field":[1,2]},"also_new":true}`...)
	if res := f.Apply(&raft.Log{Index: 7, Data: data}).(*applyResult); res.Err != nil {
		t.Fatalf("Apply: %v", res.Err)
	}
	sb, err := f.snapshot().Sandbox("sb-1")
	if err != nil || sb.ModifyIndex != 7 {
		t.Fatalf("got %+v, %v; want sb-1 at index 7", sb, err)
	}
}
