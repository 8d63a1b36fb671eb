package snapshot

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Unreferenced returns the generations of sandbox id that nothing can
// need, measured, given pinned: the generation its record pins (0 when it
// pins none). They are
//   - the sealed generations older than pinned, and only when pinned
//     itself is sealed on disk: a resume reads the pinned generation and
//     nothing else, and a crash mid-resume falls back on that same one;
//   - the unsealed (.tmp) generations, which only a suspend in progress
//     writes and only the recovery of a crashed one reads.
//
// It never returns pinned, a sealed generation newer than pinned (a
// suspend that sealed but was not recorded; Recover decides about it) or,
// when pinned is set but not sealed on disk, anything at all: the
// snapshot is damaged and what is left is the operator's to look at.
//
// Preconditions: no suspend, resume or recovery of id runs, i.e. the
// caller holds the sandbox's lock and its record is stable (running or
// suspended); otherwise an unsealed generation may be one being written.
func (s *Store) Unreferenced(id string, pinned uint64) ([]Entry, error) {
	sealed, unsealed, err := s.Generations(id)
	if err != nil {
		return nil, err
	}
	if pinned != 0 && !slices.Contains(sealed, pinned) {
		return nil, nil
	}
	var out []Entry
	for _, gen := range sealed {
		if gen < pinned {
			out = append(out, Entry{Kind: KindGeneration, Owner: id, Generation: gen, Path: s.Dir(id, gen)})
		}
	}
	for _, gen := range unsealed {
		out = append(out, Entry{Kind: KindPending, Owner: id, Generation: gen, Path: s.Dir(id, gen) + tmpSuffix})
	}
	for i := range out {
		if err := measure(&out[i]); err != nil {
			return nil, fmt.Errorf("measure snapshot %d of sandbox %s: %w", out[i].Generation, id, err)
		}
	}
	return out, nil
}

// Owned returns, measured, every entry of sandbox (or, on the objects
// store, snapshot object) id: what Remove(id) would delete.
func (s *Store) Owned(id string) ([]Entry, error) {
	sdir, err := s.sandboxDir(id)
	if err != nil {
		return nil, err
	}
	sealedKind, pendingKind := KindGeneration, KindPending
	if filepath.Base(s.dir) == ObjectsDir { // the store Objects returned
		sealedKind, pendingKind = KindObject, KindObjectPending
	}
	u := Usage{ByKind: map[string]Total{}}
	if err := u.addGenerations(sdir, id, sealedKind, pendingKind); err != nil {
		return nil, fmt.Errorf("list snapshots of %s: %w", id, err)
	}
	return u.Entries, nil
}

// RemoveEntry removes one entry that Unreferenced or Owned returned. It
// refuses a path outside the store and succeeds when the entry is gone
// already.
func (s *Store) RemoveEntry(e Entry) error {
	rel, err := filepath.Rel(s.dir, e.Path)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
		return fmt.Errorf("remove %s: not inside the snapshot directory %s", e.Path, s.dir)
	}
	if err := os.RemoveAll(e.Path); err != nil {
		return fmt.Errorf("remove %s: %w", e.Path, err)
	}
	return nil
}
