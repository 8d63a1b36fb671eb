package snapshot

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestUnreferenced(t *testing.T) {
	tests := []struct {
		name     string
		sealed   []uint64
		unsealed []uint64
		pinned   uint64
		want     []string // "<gen>" or "<gen>.tmp"
	}{
		{"older generations and leftovers go", []uint64{1, 2}, []uint64{3}, 2, []string{"1", "3.tmp"}},
		{"a newer sealed generation stays", []uint64{1, 2, 3}, nil, 2, []string{"1"}},
		{"only the pinned one", []uint64{4}, nil, 4, nil},
		{"no pin: sealed ones stay, unsealed go", []uint64{1}, []uint64{2}, 0, []string{"2.tmp"}},
		{"pinned missing on disk: nothing goes", []uint64{1}, []uint64{2}, 5, nil},
		{"pinned only unsealed: nothing goes", []uint64{1}, []uint64{2}, 2, nil},
		{"no directory", nil, nil, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t)
			for _, g := range tt.sealed {
				sealed(t, s, g, map[string]string{"mem": "state"})
			}
			for _, g := range tt.unsealed {
				pending(t, s, "sb", g, map[string]string{"mem": "partial"})
			}
			got, err := s.Unreferenced("sb", tt.pinned)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range got {
				names = append(names, filepath.Base(e.Path))
				if e.Bytes == 0 || e.Files == 0 {
					t.Errorf("%s not measured: %+v", e.Path, e)
				}
			}
			if d := cmp.Diff(tt.want, names); d != "" {
				t.Fatalf("Unreferenced (-want +got):\n%s", d)
			}
			// Removing them leaves the pinned generation usable.
			for _, e := range got {
				if err := s.RemoveEntry(e); err != nil {
					t.Fatal(err)
				}
			}
			sl, _, err := s.Generations("sb")
			if err != nil {
				t.Fatal(err)
			}
			if slices.Contains(tt.sealed, tt.pinned) {
				if !slices.Contains(sl, tt.pinned) {
					t.Fatalf("pinned generation %d removed: %v left", tt.pinned, sl)
				}
				if _, err := s.Inspect("sb", tt.pinned); err != nil {
					t.Fatalf("pinned generation after prune: %v", err)
				}
			}
		})
	}
}

func TestOwnedAndRemoveEntry(t *testing.T) {
	s := openTest(t)
	objs, err := s.Objects()
	if err != nil {
		t.Fatal(err)
	}
	pending(t, objs, "snap-a", ObjectGeneration, map[string]string{"mem": "abc"})
	got, err := objs.Owned("snap-a")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]entryView{{KindObjectPending, "snap-a", 1, 1, 3}}, views(got)); d != "" {
		t.Fatalf("Owned (-want +got):\n%s", d)
	}
	if err := objs.RemoveEntry(got[0]); err != nil {
		t.Fatal(err)
	}
	if err := objs.RemoveEntry(got[0]); err != nil {
		t.Fatalf("removing a removed entry: %v", err)
	}
	outside := Entry{Path: filepath.Dir(s.dir)}
	if err := s.RemoveEntry(outside); err == nil {
		t.Fatal("RemoveEntry removed a path outside the store")
	}
	if _, err := os.Stat(outside.Path); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveEntry(Entry{Path: s.dir}); err == nil {
		t.Fatal("RemoveEntry removed the store itself")
	}
	if _, err := s.Owned("../x"); err == nil {
		t.Fatal("Owned accepted an invalid id")
	}
}
