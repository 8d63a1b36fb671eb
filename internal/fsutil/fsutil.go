// Package fsutil holds the file-system steps several packages share.
package fsutil

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFileAtomic writes data to path so that a crash leaves the old file
// or the new one, never half of it: a temporary file of its own in the
// same directory (concurrent writers of one path each rename whole bytes
// into place), fsync, rename, and an fsync of the directory.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := replace(path, data, mode, true); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// ReplaceFile is WriteFileAtomic without the fsyncs: readers never see
// half a file, and a crash of the process (not of the host) loses
// nothing. For state that a host crash ends anyway.
func ReplaceFile(path string, data []byte, mode os.FileMode) error {
	return replace(path, data, mode, false)
}

// replace writes data to a temporary file of its own next to path, syncs
// it when sync is set, and renames it to path.
func replace(path string, data []byte, mode os.FileMode, sync bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename: a no-op
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("sync %s: %w", tmp, err)
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}
