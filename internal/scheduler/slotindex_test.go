package scheduler

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// refIndex is the reference the slot index must agree with: a sorted slice.
type refIndex []slotKey

func (r refIndex) ceil(k slotKey) (slotKey, bool) {
	i, _ := slices.BinarySearchFunc(r, k, cmpSlot)
	if i == len(r) {
		return slotKey{}, false
	}
	return r[i], true
}

func cmpSlot(a, b slotKey) int {
	switch {
	case slotLess(a, b):
		return -1
	case slotLess(b, a):
		return 1
	}
	return 0
}

func keysOf(x *slotIndex) []slotKey {
	var out []slotKey
	x.each(func(k slotKey) { out = append(out, k) })
	return out
}

// checkIndex verifies the index's structure: chunks sorted, non-empty and
// within bounds, lasts right, count right.
func checkIndex(t *testing.T, x *slotIndex) {
	t.Helper()
	n := 0
	var prev *slotKey
	for i, c := range x.chunks {
		if len(c.keys) == 0 || len(c.keys) > maxChunkKeys {
			t.Fatalf("chunk %d holds %d keys", i, len(c.keys))
		}
		if x.lasts[i] != c.keys[len(c.keys)-1] {
			t.Fatalf("lasts[%d] = %v, chunk ends with %v", i, x.lasts[i], c.keys[len(c.keys)-1])
		}
		for j := range c.keys {
			if prev != nil && !slotLess(*prev, c.keys[j]) {
				t.Fatalf("chunk %d key %d: %v after %v", i, j, c.keys[j], *prev)
			}
			prev = &c.keys[j]
		}
		n += len(c.keys)
	}
	if n != x.n || len(x.lasts) != len(x.chunks) {
		t.Fatalf("%d keys in chunks, Len %d, %d lasts for %d chunks", n, x.n, len(x.lasts), len(x.chunks))
	}
}

// TestSlotIndexMatchesReference runs random inserts, deletes and queries
// on the index and on a sorted slice, taking snapshots (clones under a new
// owner token) along the way, and requires every answer to agree and every
// snapshot to stay exactly as it was.
func TestSlotIndexMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	owner := owners.Add(1)
	var x slotIndex
	var ref refIndex
	type snap struct {
		x    slotIndex
		want []slotKey
	}
	var snaps []snap
	randKey := func() slotKey {
		return slotKey{slots: uint64(rng.IntN(400)) << 24, seq: uint32(rng.IntN(3000))}
	}
	for op := range 200_000 {
		k := randKey()
		switch r := rng.IntN(10); {
		case r < 4 && op < 100_000 || r < 2 || len(ref) < 50: // grow, then shrink
			x.Insert(owner, k)
			if i, found := slices.BinarySearchFunc(ref, k, cmpSlot); !found {
				ref = slices.Insert(ref, i, k)
			}
		case r < 8:
			if len(ref) > 0 && (rng.IntN(2) == 0 || op >= 100_000) {
				k = ref[rng.IntN(len(ref))] // a present key, most of the time
			}
			i, found := slices.BinarySearchFunc(ref, k, cmpSlot)
			if got := x.Delete(owner, k); got != found {
				t.Fatalf("op %d: Delete(%v) = %v, want %v", op, k, got, found)
			}
			if found {
				ref = slices.Delete(ref, i, i+1)
			}
		default:
			got, ok := x.Ceil(k)
			want, wok := ref.ceil(k)
			if got != want || ok != wok {
				t.Fatalf("op %d: Ceil(%v) = %v %v, want %v %v", op, k, got, ok, want, wok)
			}
			_, present := x.Get(k)
			if _, found := slices.BinarySearchFunc(ref, k, cmpSlot); present != found {
				t.Fatalf("op %d: Get(%v) = %v, want %v", op, k, present, found)
			}
			var below []slotKey
			x.DescendLessOrEqual(k, func(s slotKey) bool { below = append(below, s); return len(below) < 20 })
			i, found := slices.BinarySearchFunc(ref, k, cmpSlot)
			if found {
				i++
			}
			var wantBelow []slotKey
			for j := i - 1; j >= 0 && len(wantBelow) < 20; j-- {
				wantBelow = append(wantBelow, ref[j])
			}
			if !slices.Equal(below, wantBelow) {
				t.Fatalf("op %d: DescendLessOrEqual(%v) = %v, want %v", op, k, below, wantBelow)
			}
			m, ok := x.Max()
			if ok != (len(ref) > 0) || ok && m != ref[len(ref)-1] {
				t.Fatalf("op %d: Max = %v %v, want the last of %d", op, m, ok, len(ref))
			}
		}
		if op%997 == 0 {
			checkIndex(t, &x)
			if !slices.Equal(keysOf(&x), []slotKey(ref)) && !(len(ref) == 0 && x.n == 0) {
				t.Fatalf("op %d: index holds other keys than the reference", op)
			}
			snaps = append(snaps, snap{x: x, want: slices.Clone(ref)})
			owner = owners.Add(1) // the snapshot is committed: write under a new token
		}
	}
	if len(ref) > 2000 {
		t.Fatalf("the shrinking half left %d keys: merges were not exercised", len(ref))
	}
	for i, s := range snaps {
		if got := keysOf(&s.x); !slices.Equal(got, s.want) && !(len(got) == 0 && len(s.want) == 0) {
			t.Fatalf("snapshot %d changed after it was taken: %d keys, want %d", i, len(got), len(s.want))
		}
		if s.x.Len() != len(s.want) {
			t.Fatalf("snapshot %d: Len %d, want %d", i, s.x.Len(), len(s.want))
		}
	}
}

// TestSlotIndexEmpty covers the queries of an index with no key, and one
// emptied again.
func TestSlotIndexEmpty(t *testing.T) {
	var x slotIndex
	owner := owners.Add(1)
	check := func() {
		t.Helper()
		if _, ok := x.Ceil(slotKey{}); ok {
			t.Fatal("Ceil found a key in an empty index")
		}
		if _, ok := x.Max(); ok {
			t.Fatal("Max found a key in an empty index")
		}
		x.DescendLessOrEqual(slotKey{slots: 1 << 40}, func(slotKey) bool { t.Fatal("DescendLessOrEqual visited a key"); return false })
		if x.Delete(owner, slotKey{slots: 1}) {
			t.Fatal("Delete removed a key from an empty index")
		}
	}
	check()
	for i := range 1000 {
		x.Insert(owner, slotKey{slots: uint64(i)})
	}
	for i := range 1000 {
		if !x.Delete(owner, slotKey{slots: uint64(i)}) {
			t.Fatalf("Delete(%d) found nothing", i)
		}
	}
	check()
	checkIndex(t, &x)
}
