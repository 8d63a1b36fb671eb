// Package ckptdir is what every runtime's checkpoint directory has in
// common: a manifest, den-checkpoint.json, written last so that a
// directory without it holds no complete checkpoint, which records the
// sizes of the runtime's files (a cheap check against truncation; the
// node checksums the files). Each driver's manifest embeds Header and adds
// what a restore must match.
package ckptdir

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/denhq/den/internal/errdefs"
)

// ManifestName is the manifest's file name in a checkpoint directory.
const ManifestName = "den-checkpoint.json"

// Header is the part of a manifest every runtime writes.
type Header struct {
	// Format names the runtime's manifest layout ("den-qemu-checkpoint/1").
	Format string `json:"format"`
	// Files are the runtime's files in the directory and their sizes.
	Files     map[string]int64 `json:"files"`
	CreatedAt time.Time        `json:"created_at"`
}

// Head returns h; a manifest that embeds Header has it.
func (h *Header) Head() *Header { return h }

// Manifest is a driver's manifest: a struct that embeds Header.
type Manifest interface{ Head() *Header }

// Write records format and the sizes of files (in dir) in m's header and
// writes m as the manifest of dir.
func Write(dir, format string, files []string, m Manifest) error {
	h := m.Head()
	h.Format, h.Files, h.CreatedAt = format, map[string]int64{}, time.Now().UTC()
	for _, name := range files {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("checkpoint file: %w", err)
		}
		h.Files[name] = info.Size()
	}
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestName), data, 0o600); err != nil {
		return fmt.Errorf("write checkpoint manifest: %w", err)
	}
	return nil
}

// Read reads the manifest of dir into m and checks it is of format and
// that each of files (given the decoded manifest) is a regular file of
// the recorded size. Any failure is InvalidArgument: dir holds no
// complete checkpoint of this runtime (runtime names it in the error).
func Read(dir, format, runtime string, m Manifest, files func() []string) error {
	if !filepath.IsAbs(dir) {
		return errdefs.New(errdefs.InvalidArgument, "checkpoint dir %q is not an absolute path", dir)
	}
	path := filepath.Join(dir, ManifestName)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return errdefs.New(errdefs.InvalidArgument, "no complete checkpoint in %s (no %s)", dir, ManifestName)
	}
	if err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "read checkpoint manifest")
	}
	if err := json.Unmarshal(data, m); err != nil || m.Head().Format != format {
		return errdefs.New(errdefs.InvalidArgument, "%s is not a den %s checkpoint manifest", path, runtime)
	}
	for _, name := range files() {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !info.Mode().IsRegular() || info.Size() != m.Head().Files[name] {
			return errdefs.New(errdefs.InvalidArgument, "checkpoint in %s is incomplete: %s is missing or has the wrong size", dir, name)
		}
	}
	return nil
}

// CheckEmptyDir checks that dir is an absolute path of an existing, empty
// directory, where a checkpoint is to be written: InvalidArgument
// otherwise.
func CheckEmptyDir(dir string) error {
	if !filepath.IsAbs(dir) {
		return errdefs.New(errdefs.InvalidArgument, "checkpoint dir %q is not an absolute path", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "checkpoint dir")
	}
	if len(entries) > 0 {
		return errdefs.New(errdefs.InvalidArgument, "checkpoint dir %s is not empty", dir)
	}
	return nil
}
