package store

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/denhq/den/internal/errdefs"
)

// TestBatchedWrites sends many writes at once: they commit in fewer raft
// entries than writes, each gets its own result (a duplicate ID in the same
// batch is refused alone), and the state has exactly the accepted ones.
func TestBatchedWrites(t *testing.T) {
	s := openTest(t)
	const n, dups = 300, 20
	before := s.raft.LastIndex()
	var wg sync.WaitGroup
	errs := make([]error, n+dups)
	start := make(chan struct{})
	for i := range n + dups {
		id := fmt.Sprintf("sb-%03d", i)
		if i >= n {
			id = fmt.Sprintf("sb-%03d", i-n) // the same ID twice
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = s.CreateSandbox(testCtx(t), newSandbox(id, "acme", "", base))
		}()
	}
	close(start)
	wg.Wait()
	entries := s.raft.LastIndex() - before

	refused := map[string]int{}
	for i, err := range errs {
		id := fmt.Sprintf("sb-%03d", i%n)
		switch {
		case err == nil:
		case errdefs.Is(err, errdefs.AlreadyExists) && i%n < dups:
			refused[id]++
		default:
			t.Fatalf("create %s (write %d): %v", id, i, err)
		}
	}
	for i := range dups {
		if id := fmt.Sprintf("sb-%03d", i); refused[id] != 1 {
			t.Errorf("%s was written twice: %d of the two writes refused, want 1", id, refused[id])
		}
	}
	all, _, err := s.Snapshot().Sandboxes(SandboxFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n {
		t.Fatalf("%d sandboxes stored, want %d", len(all), n)
	}
	if entries >= n+dups {
		t.Errorf("%d writes took %d raft entries: nothing was batched", n+dups, entries)
	}
	t.Logf("%d concurrent writes in %d raft entries", n+dups, entries)
}

// TestApplyBatch applies a batch entry directly: each command is applied
// on its own at the entry's index, a bad one is refused alone, and a
// corrupt framing refuses the entry without touching the state.
func TestApplyBatch(t *testing.T) {
	f := newTestFSM(t)
	cmd := func(id string) []byte {
		data, err := encodeCmd(cmdCreateSandbox, sandboxCmd{Sandbox: newSandbox(id, "acme", "", base)})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	nested := encodeBatch([]*batchReq{{data: cmd("n1")}, {data: cmd("n2")}})
	entry := encodeBatch([]*batchReq{
		{data: cmd("a")},
		{data: []byte{cmdVersion}}, // too short
		{data: cmd("a")},           // duplicate
		{data: nested},             // a batch inside a batch
		{data: []byte{9, 1, '{'}},  // unknown format version
		{data: cmd("b")},
	})
	res := f.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: entry}).(*applyResult)
	if res.Err != nil || res.Index != 7 || len(res.Batch) != 6 {
		t.Fatalf("Apply = index %d, err %v, %d results; want index 7, no error, 6 results", res.Index, res.Err, len(res.Batch))
	}
	for i, wantOK := range []bool{true, false, false, false, false, true} {
		if (res.Batch[i] == nil) != wantOK {
			t.Errorf("command %d: err %v, want ok=%v", i, res.Batch[i], wantOK)
		}
	}
	if !errdefs.Is(res.Batch[2], errdefs.AlreadyExists) {
		t.Errorf("duplicate: %v, want AlreadyExists", res.Batch[2])
	}
	for _, id := range []string{"a", "b"} {
		sb, err := f.snapshot().Sandbox(id)
		if err != nil || sb.ModifyIndex != 7 {
			t.Errorf("sandbox %s: %+v, %v; want stored at index 7", id, sb, err)
		}
	}
	if _, err := f.snapshot().Sandbox("n1"); err == nil {
		t.Errorf("a nested batch was applied")
	}

	corrupt := append(encodeBatch([]*batchReq{{data: cmd("c")}}), 0xff) // a length with no bytes
	res = f.Apply(&raft.Log{Index: 8, Type: raft.LogCommand, Data: corrupt}).(*applyResult)
	if res.Err == nil {
		t.Fatalf("a corrupt batch was accepted")
	}
	if _, err := f.snapshot().Sandbox("c"); err == nil {
		t.Errorf("a command of a corrupt batch was applied")
	}
}

// FuzzDecodeBatch: any entry decodes or fails, never panics, and what
// decodes survives a re-encode.
func FuzzDecodeBatch(f *testing.F) {
	f.Add(encodeBatch([]*batchReq{{data: []byte{1, 2, 3}}, {data: nil}})[2:])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, body []byte) {
		cmds, err := decodeBatch(body)
		if err != nil {
			return
		}
		reqs := make([]*batchReq, len(cmds))
		for i, c := range cmds {
			reqs[i] = &batchReq{data: c}
		}
		again, err := decodeBatch(encodeBatch(reqs)[2:])
		if err != nil || len(again) != len(cmds) {
			t.Fatalf("re-encoded batch of %d decodes to %d, %v", len(cmds), len(again), err)
		}
		for i := range cmds {
			if string(again[i]) != string(cmds[i]) {
				t.Fatalf("command %d: %x, want %x", i, again[i], cmds[i])
			}
		}
	})
}

func TestBatchTimeout(t *testing.T) {
	reqs := func(ds ...time.Duration) []*batchReq {
		var out []*batchReq
		for _, d := range ds {
			out = append(out, &batchReq{timeout: d})
		}
		return out
	}
	for _, tt := range []struct {
		in   []*batchReq
		want time.Duration
	}{
		{reqs(time.Second), time.Second},
		{reqs(time.Nanosecond, 5*time.Second, time.Second), 5 * time.Second}, // one about to give up fails nobody
		{reqs(time.Second, 0), 0},
	} {
		if got := batchTimeout(tt.in); got != tt.want {
			t.Errorf("batchTimeout = %v, want %v", got, tt.want)
		}
	}
}

// A batch of sandbox commands, applied in one memdb transaction, ends in
// the state and results of applying its commands one by one: refusals
// (a duplicate, a stale update, a taken name, a missing delete) change
// nothing, and later commands see earlier ones. A command that fails
// unexpectedly (an undecodable body) sends the whole batch down the one
// by one path.
func TestSandboxBatchIsOneByOne(t *testing.T) {
	enc := func(ct cmdType, body any) []byte {
		data, err := encodeCmd(ct, body)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	create := func(id, name string) []byte {
		return enc(cmdCreateSandbox, sandboxCmd{Sandbox: newSandbox(id, "acme", name, base)})
	}
	update := func(id string, modify uint64, state string) []byte {
		sb := newSandbox(id, "acme", "", base)
		sb.ModifyIndex, sb.State = modify, state
		return enc(cmdUpdateSandbox, sandboxCmd{Sandbox: sb})
	}
	del := func(id string) []byte { return enc(cmdDeleteSandbox, idCmd{ID: id}) }
	for _, tc := range []struct {
		name string
		cmds [][]byte
	}{
		{"refusals", [][]byte{
			create("a", "x"), create("a", ""), create("b", "x"), update("a", 3, StateRunning), update("a", 7, StateRunning),
			del("missing"), create("c", ""), del("c"), create("d", "y"), update("d", 7, StateRunning), del("pre"),
		}},
		{"undecodable", [][]byte{create("a", ""), {cmdVersion, byte(cmdCreateSandbox), '{'}, create("b", ""), del("pre")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			batched, single := newTestFSM(t), newTestFSM(t)
			for _, f := range []*testFSM{batched, single} {
				f.create(t, newSandbox("pre", "acme", "", base))
				f.index = 6
			}
			reqs := make([]*batchReq, len(tc.cmds))
			for i, c := range tc.cmds {
				reqs[i] = &batchReq{data: c}
			}
			res := batched.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: encodeBatch(reqs)}).(*applyResult)
			if res.Err != nil || len(res.Batch) != len(tc.cmds) {
				t.Fatalf("Apply = %v, %d results", res.Err, len(res.Batch))
			}
			for i, c := range tc.cmds {
				ct, body, err := decodeCmd(c)
				if err == nil {
					err = single.applyCmd(7, ct, body)
				}
				if (err == nil) != (res.Batch[i] == nil) || errdefs.KindOf(err) != errdefs.KindOf(res.Batch[i]) {
					t.Errorf("command %d: batched %v, one by one %v", i, res.Batch[i], err)
				}
			}
			all := func(f *testFSM) []Sandbox {
				list, _, err := f.snapshot().Sandboxes(SandboxFilter{Tenant: "acme", Limit: 100})
				if err != nil {
					t.Fatal(err)
				}
				out := make([]Sandbox, len(list))
				for i, sb := range list {
					out[i] = *sb
				}
				return out
			}
			if got, want := all(batched), all(single); !reflect.DeepEqual(got, want) {
				t.Fatalf("batched state %+v\nwant (one by one) %+v", got, want)
			}
			if tc.name == "refusals" {
				if got := all(batched); len(got) != 2 || got[0].ID != "a" || got[0].State != StateRunning || got[1].ID != "d" || got[1].State != StateRunning {
					t.Fatalf("state after the batch = %+v, want a and d running", got)
				}
			}
		})
	}
}
