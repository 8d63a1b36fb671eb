package snapshot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/denhq/den/internal/errdefs"
)

// noFollow makes hashFile refuse symbolic links.
const noFollow = syscall.O_NOFOLLOW

// damaged is the error of a snapshot that cannot be used: FailedPrecondition,
// naming the snapshot and what is wrong with it.
func damaged(id string, gen uint64, format string, args ...any) error {
	return errdefs.New(errdefs.FailedPrecondition, "snapshot %d of sandbox %s is damaged: %s", gen, id, fmt.Sprintf(format, args...))
}

// short abbreviates a hex digest for messages.
func short(hexsum string) string {
	hexsum = strings.TrimPrefix(hexsum, "sha256:")
	if len(hexsum) > 12 {
		return hexsum[:12]
	}
	return hexsum
}

// Verify checks a sealed snapshot against ref before it is used: the
// manifest's digest, then every file's presence, size and sha256. It
// returns the generation's directory and manifest. Every problem is a
// FailedPrecondition error that names the file; nothing is changed or
// removed.
func (s *Store) Verify(id string, ref Ref) (string, Manifest, error) {
	m, raw, err := s.readManifest(id, ref.Generation)
	if err != nil {
		return "", m, err
	}
	if got := refOf(m, raw).Digest; ref.Digest != "" && got != ref.Digest {
		return "", m, damaged(id, ref.Generation, "%s has sha256 %s, want %s", ManifestName, short(got), short(ref.Digest))
	}
	dir := s.Dir(id, ref.Generation)
	for _, f := range m.Files {
		got, err := hashFile(filepath.Join(dir, filepath.FromSlash(f.Name)), false)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return "", m, damaged(id, ref.Generation, "file %q is missing", f.Name)
		case err != nil:
			return "", m, damaged(id, ref.Generation, "file %q: %v", f.Name, err)
		case got.Size != f.Size:
			return "", m, damaged(id, ref.Generation, "file %q has %d bytes, want %d", f.Name, got.Size, f.Size)
		case got.SHA256 != f.SHA256:
			return "", m, damaged(id, ref.Generation, "file %q has sha256 %s, want %s", f.Name, short(got.SHA256), short(f.SHA256))
		}
	}
	return dir, m, nil
}

// Inspect reads the manifest of sealed generation gen of sandbox id and
// checks that its files exist with their sizes (not their content: that
// is Verify's job, when the snapshot is used). It is what recovery uses
// to adopt a generation sealed just before a crash.
func (s *Store) Inspect(id string, gen uint64) (Ref, error) {
	m, raw, err := s.readManifest(id, gen)
	if err != nil {
		return Ref{}, err
	}
	dir := s.Dir(id, gen)
	for _, f := range m.Files {
		fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(f.Name)))
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != f.Size {
			return Ref{}, damaged(id, gen, "file %q is missing or has the wrong size", f.Name)
		}
	}
	return refOf(m, raw), nil
}

// readManifest reads and checks the manifest of generation gen.
func (s *Store) readManifest(id string, gen uint64) (Manifest, []byte, error) {
	var m Manifest
	if _, err := s.sandboxDir(id); err != nil {
		return m, nil, err
	}
	raw, err := os.ReadFile(filepath.Join(s.Dir(id, gen), ManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil, damaged(id, gen, "%s is missing", ManifestName)
	}
	if err != nil {
		return m, nil, damaged(id, gen, "%v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, nil, damaged(id, gen, "%s is not valid: %v", ManifestName, err)
	}
	switch {
	case m.Version != manifestVersion:
		return m, nil, damaged(id, gen, "%s has version %d, want %d", ManifestName, m.Version, manifestVersion)
	case m.Sandbox != id || m.Generation != gen:
		return m, nil, damaged(id, gen, "%s is for snapshot %d of sandbox %s", ManifestName, m.Generation, m.Sandbox)
	}
	for _, f := range m.Files {
		if !validName(f.Name) {
			return m, nil, damaged(id, gen, "%s names the file %q", ManifestName, f.Name)
		}
	}
	return m, raw, nil
}

// validName reports whether a manifest file name stays inside its
// generation directory.
func validName(name string) bool {
	return name != "" && name != ManifestName && !strings.HasPrefix(name, "/") &&
		path.Clean(name) == name && name != ".." && !strings.HasPrefix(name, "../")
}

// Generations lists the sealed and the unsealed (.tmp) generations of
// sandbox id, each ascending; none when it has no directory.
func (s *Store) Generations(id string) (sealed, unsealed []uint64, err error) {
	sdir, err := s.sandboxDir(id)
	if err != nil {
		return nil, nil, err
	}
	entries, err := os.ReadDir(sdir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list snapshots of sandbox %s: %w", id, err)
	}
	for _, e := range entries {
		name, tmp := strings.CutSuffix(e.Name(), tmpSuffix)
		gen, err := strconv.ParseUint(name, 10, 64)
		if err != nil || !e.IsDir() || strconv.FormatUint(gen, 10) != name {
			continue
		}
		if tmp {
			unsealed = append(unsealed, gen)
		} else {
			sealed = append(sealed, gen)
		}
	}
	slices.Sort(sealed)
	slices.Sort(unsealed)
	return sealed, unsealed, nil
}

// Prune removes every generation of sandbox id, sealed or not, except
// sealed generation keep (0 keeps none).
func (s *Store) Prune(id string, keep uint64) error {
	deleteMoved, err := s.Discard(id, keep)
	deleteMoved()
	return err
}

// trashDir is the store's directory of generations on their way out
// (Discard); no sandbox ID can take its name (IDs start with a letter or
// a digit).
const trashDir = ".trash"

// Discard removes what Prune removes, but leaves deleting the sealed
// generations' files to the function it returns: they are moved into the
// store's trash first, one rename each. Deleting big files is slow on a
// file system that discards (TRIMs) the blocks it frees: ~140 ms per
// 256 MiB on the dev VM, on a suspend's path. Open empties the trash a
// crash left.
func (s *Store) Discard(id string, keep uint64) (deleteMoved func(), err error) {
	var moved []string
	deleteMoved = func() {
		for _, d := range moved {
			_ = os.RemoveAll(d)
		}
	}
	sealed, unsealed, err := s.Generations(id)
	if err != nil {
		return deleteMoved, err
	}
	var errs []error
	for _, gen := range sealed {
		if gen == keep {
			continue
		}
		d, err := s.moveToTrash(id, gen)
		if err != nil {
			errs = append(errs, os.RemoveAll(s.Dir(id, gen)))
			continue
		}
		moved = append(moved, d)
	}
	for _, gen := range unsealed {
		errs = append(errs, os.RemoveAll(s.Dir(id, gen)+tmpSuffix))
		if err := os.Remove(s.Dir(id, gen) + ".manifest" + tmpSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return deleteMoved, fmt.Errorf("prune snapshots of sandbox %s: %w", id, err)
	}
	return deleteMoved, nil
}

// moveToTrash renames sealed generation gen of sandbox id into a new
// directory of the trash and returns that directory.
func (s *Store) moveToTrash(id string, gen uint64) (string, error) {
	trash := filepath.Join(s.dir, trashDir)
	if err := os.MkdirAll(trash, 0o700); err != nil {
		return "", err
	}
	d, err := os.MkdirTemp(trash, id+"-")
	if err != nil {
		return "", err
	}
	if err := os.Rename(s.Dir(id, gen), filepath.Join(d, strconv.FormatUint(gen, 10))); err != nil {
		_ = os.Remove(d)
		return "", err
	}
	return d, nil
}

// Remove removes every snapshot of sandbox id. It succeeds when there are
// none.
func (s *Store) Remove(id string) error {
	sdir, err := s.sandboxDir(id)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(sdir); err != nil {
		return fmt.Errorf("remove snapshots of sandbox %s: %w", id, err)
	}
	return nil
}

// IDs lists the sandboxes that have a snapshot directory (ObjectsDir,
// which is no sandbox's, left out).
func (s *Store) IDs() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list snapshot dir: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && validID.MatchString(e.Name()) && e.Name() != ObjectsDir {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}
