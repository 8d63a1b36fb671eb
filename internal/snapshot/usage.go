package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Kinds of the directories Usage finds.
const (
	// KindGeneration is a sealed generation of a sandbox: <id>/<gen>/.
	KindGeneration = "generation"
	// KindPending is an unsealed generation of a sandbox, <id>/<gen>.tmp/:
	// being written, or left by a failure or a crash.
	KindPending = "pending"
	// KindObject is a sealed snapshot object: objects/<id>/1/.
	KindObject = "object"
	// KindObjectPending is an unsealed snapshot object: objects/<id>/1.tmp/.
	KindObjectPending = "object-pending"
	// KindOther is anything else: a name no writer of this package makes.
	KindOther = "other"
)

// Entry is one directory (or stray file) of the snapshot directory and
// what it holds.
type Entry struct {
	Kind string
	// Owner is the sandbox ID (KindGeneration, KindPending) or the
	// snapshot ID (KindObject, KindObjectPending); for KindOther, the
	// sandbox or snapshot directory it lies in, or "" at the top.
	Owner string
	// Generation is the generation's number (0 for KindOther).
	Generation uint64
	// Path is the entry's absolute path.
	Path string
	// Bytes is the sum of the apparent sizes of its regular files, Files
	// their number.
	Bytes int64
	Files int
	// ModTime is the newest modification time of the entry or anything in
	// it: when it was last written.
	ModTime time.Time
}

// Total sums the entries of one kind.
type Total struct {
	Entries int
	Bytes   int64
	Files   int
}

// Usage is what a snapshot directory holds.
type Usage struct {
	// Entries are sorted by path.
	Entries []Entry
	// ByKind sums the entries by Kind.
	ByKind map[string]Total
	// Bytes and Files are the totals of all entries.
	Bytes int64
	Files int
}

// Usage walks the whole snapshot directory (the store Open returned for
// <data-dir>/snapshots, whose ObjectsDir holds the snapshot objects) and
// reports each generation, pending directory and snapshot object with its
// size. It reads sizes only, never contents, and changes nothing. It may
// run concurrently with writers: an entry that vanishes while it is
// walked is left out (or counted partly).
func (s *Store) Usage() (Usage, error) {
	u := Usage{ByKind: map[string]Total{}}
	top, err := os.ReadDir(s.dir)
	if err != nil {
		return u, fmt.Errorf("snapshot usage: %w", err)
	}
	for _, e := range top {
		p := filepath.Join(s.dir, e.Name())
		switch {
		case !e.IsDir() || !validID.MatchString(e.Name()):
			err = u.add(Entry{Kind: KindOther, Path: p})
		case e.Name() == ObjectsDir:
			err = u.addOwners(p, KindObject, KindObjectPending)
		default:
			err = u.addGenerations(p, e.Name(), KindGeneration, KindPending)
		}
		if err != nil {
			return u, fmt.Errorf("snapshot usage: %w", err)
		}
	}
	return u, nil
}

// addOwners adds every owner directory under dir (the objects directory).
func (u *Usage) addOwners(dir, sealedKind, pendingKind string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if !e.IsDir() || !validID.MatchString(e.Name()) {
			if err := u.add(Entry{Kind: KindOther, Path: p}); err != nil {
				return err
			}
			continue
		}
		if err := u.addGenerations(p, e.Name(), sealedKind, pendingKind); err != nil {
			return err
		}
	}
	return nil
}

// addGenerations adds the generations in owner's directory dir.
func (u *Usage) addGenerations(dir, owner, sealedKind, pendingKind string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		en := Entry{Kind: KindOther, Owner: owner, Path: filepath.Join(dir, e.Name())}
		if gen, tmp, ok := parseGeneration(e.Name()); ok && e.IsDir() {
			en.Kind, en.Generation = sealedKind, gen
			if tmp {
				en.Kind = pendingKind
			}
		}
		if err := u.add(en); err != nil {
			return err
		}
	}
	return nil
}

// parseGeneration parses "<gen>" or "<gen>.tmp".
func parseGeneration(name string) (gen uint64, tmp bool, ok bool) {
	num, tmp := strings.CutSuffix(name, tmpSuffix)
	gen, err := strconv.ParseUint(num, 10, 64)
	if err != nil || strconv.FormatUint(gen, 10) != num {
		return 0, false, false
	}
	return gen, tmp, true
}

// add measures e and records it.
func (u *Usage) add(e Entry) error {
	if err := measure(&e); err != nil {
		return err
	}
	u.Entries = append(u.Entries, e)
	t := u.ByKind[e.Kind]
	t.Entries++
	t.Bytes += e.Bytes
	t.Files += e.Files
	u.ByKind[e.Kind] = t
	u.Bytes += e.Bytes
	u.Files += e.Files
	return nil
}

// measure fills e's Bytes, Files and ModTime from the tree at e.Path,
// never following a symbolic link. What vanishes meanwhile is skipped.
func measure(e *Entry) error {
	err := filepath.WalkDir(e.Path, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.ModTime().After(e.ModTime) {
			e.ModTime = fi.ModTime()
		}
		if fi.Mode().IsRegular() {
			e.Bytes += fi.Size()
			e.Files++
		}
		return nil
	})
	return err
}
