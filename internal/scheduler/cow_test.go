package scheduler

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestPlacementMap checks the hash trie against a Go map under random
// inserts and removes, with forced full-hash collisions, and that a copy
// taken before the writes (a snapshot) is left unchanged.
func TestPlacementMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var m placementMap
	want := map[string]uint64{}
	owner := owners.Add(1)
	hashOf := func(id string) uint64 {
		if id[len(id)-1] == '7' {
			return 42 // collide on the whole hash
		}
		return idHash(id)
	}
	var snap placementMap
	var snapWant map[string]uint64
	for i := range 20000 {
		id := fmt.Sprint("s", rng.IntN(3000))
		if _, ok := want[id]; ok {
			rec, ok := m.remove(owner, hashOf(id), id)
			if !ok || rec.sandboxID != id {
				t.Fatalf("remove %s: %v %v", id, rec, ok)
			}
			delete(want, id)
		} else {
			if !m.insert(owner, &placementRec{hash: hashOf(id), sandboxID: id}) {
				t.Fatalf("insert %s: reported a duplicate", id)
			}
			want[id] = hashOf(id)
			if m.insert(owner, &placementRec{hash: hashOf(id), sandboxID: id}) {
				t.Fatalf("insert %s twice: not reported", id)
			}
		}
		if i == 10000 {
			snap, snapWant = m, map[string]uint64{}
			for k, v := range want {
				snapWant[k] = v
			}
			owner = owners.Add(1) // the writer moves on, as after a commit
		}
	}
	for name, tc := range map[string]struct {
		m    placementMap
		want map[string]uint64
	}{"live": {m, want}, "snapshot": {snap, snapWant}} {
		if tc.m.n != len(tc.want) {
			t.Fatalf("%s: %d entries, want %d", name, tc.m.n, len(tc.want))
		}
		seen := 0
		tc.m.each(func(pr *placementRec) bool {
			if h, ok := tc.want[pr.sandboxID]; !ok || h != pr.hash {
				t.Fatalf("%s: unexpected %s", name, pr.sandboxID)
			}
			seen++
			return true
		})
		for id, h := range tc.want {
			if _, ok := tc.m.get(h, id); !ok {
				t.Fatalf("%s: %s missing", name, id)
			}
		}
		if seen != len(tc.want) {
			t.Fatalf("%s: iterated %d, want %d", name, seen, len(tc.want))
		}
	}
}

func TestNodeTableCopyOnWrite(t *testing.T) {
	var tb nodeTable
	o1 := owners.Add(1)
	for i := range uint32(300) {
		tb.set(o1, i, &nodeRec{seq: i})
	}
	snap := tb
	o2 := owners.Add(1)
	tb.set(o2, 5, &nodeRec{seq: 5, count: 1})
	tb.set(o2, 299, nil)
	if r, _ := snap.get(5); r.count != 0 {
		t.Fatal("a write after the snapshot changed it")
	}
	if _, ok := snap.get(299); !ok {
		t.Fatal("a delete after the snapshot removed from it")
	}
	if r, _ := tb.get(5); r.count != 1 {
		t.Fatal("the write is lost")
	}
	if _, ok := tb.get(299); ok {
		t.Fatal("the delete is lost")
	}
	if _, ok := tb.get(100000); ok {
		t.Fatal("a sequence beyond the table is found")
	}
}
