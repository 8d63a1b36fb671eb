package snapshot

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/denhq/den/internal/errdefs"
)

// TestVerifyRemembersDigests: Seal remembers the digest of a file whose
// times had settled, and any later write, even of the same size, changes
// its stamp, so Verify hashes it again and reports the damage.
func TestVerifyRemembersDigests(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Begin("sb", 1)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(p.Dir, "pages.img")
	if err := os.WriteFile(file, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * settleTime) // let the file's times settle, as a runtime's checkpoint has
	ref, err := p.Seal(Meta{Driver: "test", Created: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	sealed := filepath.Join(s.Dir("sb", 1), "pages.img")
	if _, _, err := s.Verify("sb", ref); err != nil {
		t.Fatalf("verify: %v", err)
	}
	fi, _ := os.Stat(sealed)
	st, _ := stampOf(fi)
	if _, ok := knownDigest(st); !ok {
		t.Fatal("the sealed file's digest was not remembered")
	}
	// The same size, other bytes: the stamp changes, so Verify reads it.
	if err := os.WriteFile(sealed, []byte("0123456780"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Verify("sb", ref)
	if !errdefs.Is(err, errdefs.FailedPrecondition) {
		t.Fatalf("verify after a same-size write: %v, want the damage reported", err)
	}
}
