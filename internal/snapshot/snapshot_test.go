package snapshot

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/internal/errdefs"
)

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// write creates files (name → content) under dir.
func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// sealed writes and seals generation gen of sandbox "sb" with files.
func sealed(t *testing.T, s *Store, gen uint64, files map[string]string) Ref {
	t.Helper()
	p, err := s.Begin("sb", gen)
	if err != nil {
		t.Fatal(err)
	}
	write(t, p.Dir, files)
	ref, err := p.Seal(Meta{Driver: "fake", Spec: json.RawMessage(`{"id":"sb"}`), Created: time.Unix(1e9, 0)})
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func wantErr(t *testing.T, err error, kind errdefs.Kind, msg string) {
	t.Helper()
	if err == nil || errdefs.KindOf(err) != kind || err.Error() != msg {
		t.Fatalf("got %v (%s), want %s %q", err, errdefs.KindOf(err), kind, msg)
	}
}

func TestSealVerifyRoundTrip(t *testing.T) {
	s := openTest(t)
	ref := sealed(t, s, 1, map[string]string{"mem.img": "memory", "fs/upper.tar": "layer"})
	if ref.Generation != 1 || ref.Size != int64(len("memory")+len("layer")) || len(ref.Digest) != len("sha256:")+64 {
		t.Fatalf("ref = %+v", ref)
	}
	dir, _, err := s.Verify("sb", ref)
	if err != nil || dir != s.Dir("sb", 1) {
		t.Fatalf("Verify = %q, %v", dir, err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	want := []File{
		{Name: "fs/upper.tar", Size: 5, SHA256: hexOf("layer")},
		{Name: "mem.img", Size: 6, SHA256: hexOf("memory")},
	}
	if diff := cmp.Diff(want, m.Files); diff != "" {
		t.Errorf("manifest files (-want +got):\n%s", diff)
	}
	var spec bytes.Buffer
	if err := json.Compact(&spec, m.Spec); err != nil {
		t.Fatal(err)
	}
	if m.Sandbox != "sb" || m.Generation != 1 || m.Driver != "fake" || spec.String() != `{"id":"sb"}` {
		t.Errorf("manifest = %+v", m)
	}
	got, err := s.Inspect("sb", 1)
	if err != nil || got != ref {
		t.Errorf("Inspect = %+v, %v; want %+v", got, err, ref)
	}
	if _, err := s.Begin("sb", 1); !errdefs.Is(err, errdefs.AlreadyExists) {
		t.Errorf("Begin of a sealed generation: %v, want AlreadyExists", err)
	}
}

func TestVerifyNamesWhatIsWrong(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string, ref *Ref)
		msg    string
	}{
		{"file changed", func(t *testing.T, dir string, _ *Ref) {
			write(t, dir, map[string]string{"mem.img": "MEMORY"})
		}, `snapshot 1 of sandbox sb is damaged: file "mem.img" has sha256 ` + short(hexOf("MEMORY")) + ", want " + short(hexOf("memory"))},
		{"file truncated", func(t *testing.T, dir string, _ *Ref) {
			write(t, dir, map[string]string{"mem.img": "mem"})
		}, `snapshot 1 of sandbox sb is damaged: file "mem.img" has 3 bytes, want 6`},
		{"file missing", func(t *testing.T, dir string, _ *Ref) {
			os.Remove(filepath.Join(dir, "mem.img"))
		}, `snapshot 1 of sandbox sb is damaged: file "mem.img" is missing`},
		{"manifest missing", func(t *testing.T, dir string, _ *Ref) {
			os.Remove(filepath.Join(dir, ManifestName))
		}, "snapshot 1 of sandbox sb is damaged: manifest.json is missing"},
		{"manifest not JSON", func(t *testing.T, dir string, _ *Ref) {
			os.WriteFile(filepath.Join(dir, ManifestName), []byte("{"), 0o600)
		}, "snapshot 1 of sandbox sb is damaged: manifest.json is not valid: unexpected EOF"},
		{"manifest differs from the record", func(t *testing.T, _ string, ref *Ref) {
			ref.Digest = "sha256:" + hexOf("other")
		}, "snapshot 1 of sandbox sb is damaged: manifest.json has sha256 "},
		{"whole snapshot gone", func(t *testing.T, dir string, _ *Ref) {
			os.RemoveAll(dir)
		}, "snapshot 1 of sandbox sb is damaged: manifest.json is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t)
			ref := sealed(t, s, 1, map[string]string{"mem.img": "memory"})
			tt.damage(t, s.Dir("sb", 1), &ref)
			_, _, err := s.Verify("sb", ref)
			if tt.name == "manifest differs from the record" {
				if err == nil || errdefs.KindOf(err) != errdefs.FailedPrecondition || len(err.Error()) < len(tt.msg) || err.Error()[:len(tt.msg)] != tt.msg {
					t.Fatalf("got %v, want FailedPrecondition starting %q", err, tt.msg)
				}
				return
			}
			wantErr(t, err, errdefs.FailedPrecondition, tt.msg)
		})
	}
}

func hexOf(s string) string {
	f, err := hashOf(s)
	if err != nil {
		panic(err)
	}
	return f
}

func hashOf(s string) (string, error) {
	dir, err := os.MkdirTemp("", "snap")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		return "", err
	}
	f, err := hashFile(p, false)
	return f.SHA256, err
}

func TestSealRefusesWhatIsNotAFile(t *testing.T) {
	s := openTest(t)
	p, err := s.Begin("sb", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(p.Dir, "link")); err != nil {
		t.Fatal(err)
	}
	_, err = p.Seal(Meta{Driver: "fake"})
	if err == nil || err.Error() != `seal snapshot 1 of sandbox sb: "link" is not a regular file` {
		t.Fatalf("Seal with a symlink: %v", err)
	}
	if sealed, unsealed, _ := s.Generations("sb"); len(sealed) != 0 || len(unsealed) != 1 {
		t.Fatalf("after a failed seal: sealed %v unsealed %v, want the .tmp left", sealed, unsealed)
	}
}

func TestGenerationsAndPrune(t *testing.T) {
	s := openTest(t)
	sealed(t, s, 1, map[string]string{"a": "1"})
	sealed(t, s, 2, map[string]string{"a": "2"})
	if _, err := s.Begin("sb", 3); err != nil { // a crash while writing 3
		t.Fatal(err)
	}
	gotSealed, gotUnsealed, err := s.Generations("sb")
	if err != nil || !cmp.Equal(gotSealed, []uint64{1, 2}) || !cmp.Equal(gotUnsealed, []uint64{3}) {
		t.Fatalf("Generations = %v %v %v", gotSealed, gotUnsealed, err)
	}
	if p, err := s.Pending("sb", 3); err != nil || p.Dir != s.Dir("sb", 3)+".tmp" {
		t.Fatalf("Pending = %+v, %v", p, err)
	}
	if err := s.Prune("sb", 2); err != nil {
		t.Fatal(err)
	}
	gotSealed, gotUnsealed, _ = s.Generations("sb")
	if !cmp.Equal(gotSealed, []uint64{2}) || len(gotUnsealed) != 0 {
		t.Fatalf("after Prune(2): %v %v", gotSealed, gotUnsealed)
	}
	if ids, err := s.IDs(); err != nil || !cmp.Equal(ids, []string{"sb"}) {
		t.Fatalf("IDs = %v, %v", ids, err)
	}
	if err := s.Remove("sb"); err != nil {
		t.Fatal(err)
	}
	if ids, _ := s.IDs(); len(ids) != 0 {
		t.Fatalf("IDs after Remove = %v", ids)
	}
	if _, err := s.Begin("../x", 1); !errdefs.Is(err, errdefs.InvalidArgument) {
		t.Fatalf("Begin with a bad id: %v", err)
	}
}

// TestDiscard: the generations leave the sandbox's directory at once,
// their files stay in the trash until the returned function deletes them
// (or the store is opened again after a crash), and usage and IDs never
// count the trash.
func TestDiscard(t *testing.T) {
	s := openTest(t)
	sealed(t, s, 1, map[string]string{"a": "1"})
	sealed(t, s, 2, map[string]string{"a": "2"})
	sealed(t, s, 3, map[string]string{"a": "3"})
	if _, err := s.Begin("sb", 4); err != nil {
		t.Fatal(err)
	}
	deleteMoved, err := s.Discard("sb", 3)
	if err != nil {
		t.Fatal(err)
	}
	gotSealed, gotUnsealed, _ := s.Generations("sb")
	if !cmp.Equal(gotSealed, []uint64{3}) || len(gotUnsealed) != 0 {
		t.Fatalf("after Discard(3): %v %v", gotSealed, gotUnsealed)
	}
	trash := filepath.Join(s.dir, trashDir)
	if n := countFiles(t, trash); n != 4 {
		t.Fatalf("trash holds %d files, want the 4 of generations 1 and 2 (a file and a manifest each)", n)
	}
	if ids, err := s.IDs(); err != nil || !cmp.Equal(ids, []string{"sb"}) {
		t.Fatalf("IDs = %v, %v", ids, err)
	}
	deleteMoved()
	if n := countFiles(t, trash); n != 0 {
		t.Fatalf("trash holds %d files after deleting", n)
	}

	// A crash between the move and the deletion: Open empties the trash.
	sealed(t, s, 5, map[string]string{"a": "5"})
	if _, err := s.Discard("sb", 5); err != nil {
		t.Fatal(err)
	}
	if n := countFiles(t, trash); n != 2 {
		t.Fatalf("trash holds %d files, want generation 3's 2", n)
	}
	if _, err := Open(s.dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(trash); !os.IsNotExist(err) {
		t.Fatalf("trash after Open: %v", err)
	}
	if _, _, err := s.Verify("sb", sealed(t, s, 6, map[string]string{"a": "6"})); err != nil {
		t.Fatal(err)
	}
}

// countFiles counts the regular files under dir (0 when it is missing).
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return filepath.SkipAll
			}
			return err
		}
		if d.Type().IsRegular() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSealAfterInterruptedSeal seals a generation whose first Seal wrote
// its manifest and then died before the rename (den was killed): the
// second Seal, after a restart, completes it. A manifest.json of the
// runtime's own is still refused.
func TestSealAfterInterruptedSeal(t *testing.T) {
	s := openTest(t)
	p, err := s.Begin("sb", 1)
	if err != nil {
		t.Fatal(err)
	}
	write(t, p.Dir, map[string]string{"mem.img": "memory"})
	m := Manifest{Version: manifestVersion, Sandbox: "sb", Generation: 1, Driver: "fake"}
	raw, _ := json.Marshal(m)
	write(t, p.Dir, map[string]string{ManifestName: string(raw)}) // what the killed Seal left
	// A Seal killed while writing its manifest leaves a partial one beside
	// the directory, never inside it.
	if err := os.WriteFile(s.Dir("sb", 1)+".manifest.tmp", raw[:5], 0o600); err != nil {
		t.Fatal(err)
	}
	again, err := s.Pending("sb", 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := again.Seal(Meta{Driver: "fake", Created: time.Unix(1e9, 0)})
	if err != nil {
		t.Fatalf("Seal after an interrupted Seal: %v", err)
	}
	if _, err := os.Lstat(s.Dir("sb", 1) + ".manifest.tmp"); !os.IsNotExist(err) {
		t.Fatalf("the partial manifest outlived the Seal: %v", err)
	}
	if _, _, err := s.Verify("sb", ref); err != nil {
		t.Fatalf("Verify: %v", err)
	}

	p2, err := s.Begin("sb", 2)
	if err != nil {
		t.Fatal(err)
	}
	write(t, p2.Dir, map[string]string{ManifestName: `{"the":"runtime's"}`})
	if _, err := p2.Seal(Meta{Driver: "fake"}); err == nil || !strings.Contains(err.Error(), "the runtime wrote a file named manifest.json") {
		t.Fatalf("Seal with the runtime's manifest.json: %v", err)
	}
}
