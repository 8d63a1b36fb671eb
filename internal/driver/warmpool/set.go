package warmpool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// A driver keeps its spares outside its sandboxes' directory, in a set per
// driver instance:
//
//	<parent>/<instance>/lock        flock(2)ed by the instance while it lives
//	<parent>/<instance>/<spare-id>/ a spare's directory, as a sandbox's
//
// Nothing else records a spare, so an instance that dies leaves its spares
// behind; the next instance destroys those of every set whose lock it can
// take (the kernel drops a lock when its holder dies). A live instance's
// lock is held, so two drivers on one state directory (as in tests) leave
// each other's spares alone.

// LockName is the name of a set's lock file.
const LockName = "lock"

// IDPrefix starts every spare's ID.
const IDPrefix = "spare-"

// Set is this instance's spare directory and the lock that marks it live.
type Set struct {
	// Dir holds the instance's spares.
	Dir  string
	lock *os.File // nil once released
}

// OpenSet creates a new set under parent and locks it.
func OpenSet(parent string) (*Set, error) {
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, fmt.Errorf("create spare dir: %w", err)
	}
	dir := filepath.Join(parent, RandomHex(4))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create spare dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, LockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create spare lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock spare dir: %w", err)
	}
	return &Set{Dir: dir, lock: f}, nil
}

// NewID returns a new spare ID and its directory in s.
func (s *Set) NewID() (id, dir string) {
	id = IDPrefix + RandomHex(6)
	return id, filepath.Join(s.Dir, id)
}

// Release removes the (by now empty) set directory and drops the lock. A
// directory that is not empty stays, for the next instance to clean up.
func (s *Set) Release() error {
	if s == nil || s.lock == nil {
		return nil
	}
	_ = os.Remove(filepath.Join(s.Dir, LockName))
	err := os.Remove(s.Dir)
	s.lock.Close()
	s.lock = nil
	if err != nil {
		return fmt.Errorf("remove spare dir: %w", err)
	}
	return nil
}

// CleanupSets destroys the spares of the sets under parent whose
// instances are gone, calling destroy with each spare's ID and directory.
// Errors are logged: a spare that cannot be removed now is retried by the
// next instance.
func CleanupSets(ctx context.Context, parent string, destroy func(ctx context.Context, id, dir string) error, log *slog.Logger) {
	sets, err := os.ReadDir(parent)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		log.Warn("list warm spares of earlier instances", "err", err)
		return
	}
	for _, set := range sets {
		dir := filepath.Join(parent, set.Name())
		if err := cleanupSet(ctx, dir, destroy, log); err != nil {
			log.Warn("clean up warm spares of an earlier instance", "dir", dir, "err", err)
		}
	}
}

// cleanupSet destroys the spares in dir and removes it, unless the
// instance that owns it still holds its lock (or is still creating it).
func cleanupSet(ctx context.Context, dir string, destroy func(ctx context.Context, id, dir string) error, log *slog.Logger) error {
	f, err := os.Open(filepath.Join(dir, LockName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
		return nil
	} else if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if err := destroy(ctx, e.Name(), filepath.Join(dir, e.Name())); err != nil {
			return err
		}
		log.Info("destroyed warm spare left by an earlier instance", "spare", e.Name())
	}
	return os.RemoveAll(dir) // only the lock file is left
}

// RandomHex is n random bytes, hex-encoded.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
