package scheduler

import "testing"

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
