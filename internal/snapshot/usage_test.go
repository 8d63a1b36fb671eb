package snapshot

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// entryView is what the tests compare of an Entry.
type entryView struct {
	Kind       string
	Owner      string
	Generation uint64
	Files      int
	Bytes      int64
}

func views(es []Entry) []entryView {
	var out []entryView
	for _, e := range es {
		out = append(out, entryView{e.Kind, e.Owner, e.Generation, e.Files, e.Bytes})
	}
	return out
}

// manifestSize is the size of the manifest of generation gen of id in s.
func manifestSize(t *testing.T, s *Store, id string, gen uint64) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(s.Dir(id, gen), ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// pending leaves an unsealed generation gen of id in s with files.
func pending(t *testing.T, s *Store, id string, gen uint64, files map[string]string) *Pending {
	t.Helper()
	p, err := s.Begin(id, gen)
	if err != nil {
		t.Fatal(err)
	}
	write(t, p.Dir, files)
	return p
}

func TestUsage(t *testing.T) {
	s := openTest(t)
	sealed(t, s, 1, map[string]string{"mem": "12345"})
	sealed(t, s, 2, map[string]string{"mem": "1234567", "fs/upper": "ab"})
	pending(t, s, "sb", 3, map[string]string{"mem": "xyz"})
	objs, err := s.Objects()
	if err != nil {
		t.Fatal(err)
	}
	p := pending(t, objs, "snap-a", ObjectGeneration, map[string]string{"mem": "0123456789"})
	if _, err := p.Seal(Meta{Driver: "fake"}); err != nil {
		t.Fatal(err)
	}
	pending(t, objs, "snap-b", ObjectGeneration, map[string]string{"mem": "01"})
	write(t, s.dir, map[string]string{"stray": "1234", "sb/notes.txt": "hi"})

	u, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	m1, m2, mo := manifestSize(t, s, "sb", 1), manifestSize(t, s, "sb", 2), manifestSize(t, objs, "snap-a", 1)
	want := []entryView{
		{KindObject, "snap-a", 1, 2, 10 + mo},
		{KindObjectPending, "snap-b", 1, 1, 2},
		{KindGeneration, "sb", 1, 2, 5 + m1},
		{KindGeneration, "sb", 2, 3, 9 + m2},
		{KindPending, "sb", 3, 1, 3},
		{KindOther, "sb", 0, 1, 2},
		{KindOther, "", 0, 1, 4},
	}
	if d := cmp.Diff(want, views(u.Entries)); d != "" {
		t.Fatalf("entries (-want +got):\n%s", d)
	}
	var bytes int64
	var files int
	for _, w := range want {
		bytes, files = bytes+w.Bytes, files+w.Files
	}
	if u.Bytes != bytes || u.Files != files {
		t.Fatalf("totals %d bytes %d files, want %d, %d", u.Bytes, u.Files, bytes, files)
	}
	wantKinds := map[string]Total{
		KindGeneration:    {Entries: 2, Bytes: 14 + m1 + m2, Files: 5},
		KindPending:       {Entries: 1, Bytes: 3, Files: 1},
		KindObject:        {Entries: 1, Bytes: 10 + mo, Files: 2},
		KindObjectPending: {Entries: 1, Bytes: 2, Files: 1},
		KindOther:         {Entries: 2, Bytes: 6, Files: 2},
	}
	if d := cmp.Diff(wantKinds, u.ByKind); d != "" {
		t.Fatalf("by kind (-want +got):\n%s", d)
	}
}

func TestUsageEmpty(t *testing.T) {
	s := openTest(t)
	u, err := s.Usage()
	if err != nil || len(u.Entries) != 0 || u.Bytes != 0 {
		t.Fatalf("Usage of an empty dir = %+v, %v", u, err)
	}
}
