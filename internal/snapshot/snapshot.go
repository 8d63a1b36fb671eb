// Package snapshot keeps the saved states of suspended sandboxes on a
// node's disk: one directory per sandbox, one subdirectory per generation,
// each made visible only by the rename of complete, synced files and
// pinned by a manifest that names every file with its size and sha256.
//
// Layout, under the directory given to Open (<data-dir>/snapshots):
//
//	<sandbox-id>/<generation>.tmp/   being written (the driver's files); never read
//	<sandbox-id>/<generation>/       complete: the driver's files + manifest.json
//
// A generation is sealed by: fsync of every file and directory, writing
// and syncing manifest.json, renaming <generation>.tmp to <generation>
// and syncing the sandbox directory. A crash leaves either a .tmp
// directory (incomplete, removed by Prune) or a complete generation.
//
// The manifest is the unit a later object store ships: its files are
// content-addressed by their sha256, and the sha256 of manifest.json
// itself (the Ref's Digest, kept in the sandbox record) pins the whole
// snapshot, so a copy fetched from anywhere can be verified the same way.
//
// Concurrency: a Store is safe for concurrent use for different sandbox
// IDs; calls for one ID are serialised by the caller (the node).
package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/denhq/den/internal/errdefs"
)

// ManifestName is the manifest's file name in a generation directory.
const ManifestName = "manifest.json"

// manifestVersion is the Manifest.Version this package writes and reads.
const manifestVersion = 1

// tmpSuffix marks a generation directory that is being written.
const tmpSuffix = ".tmp"

// Manifest describes one complete snapshot.
type Manifest struct {
	Version    int       `json:"version"`
	Sandbox    string    `json:"sandbox"`
	Generation uint64    `json:"generation"`
	Created    time.Time `json:"created"`
	// Driver is the runtime that wrote the files; only it can read them.
	Driver string `json:"driver"`
	// Spec is the runtime spec the sandbox was created with (opaque here).
	Spec json.RawMessage `json:"spec,omitempty"`
	// Files lists every regular file of the snapshot but the manifest,
	// sorted by name.
	Files []File `json:"files"`
}

// File is one file of a snapshot.
type File struct {
	// Name is the path relative to the generation directory, with "/".
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // hex
}

// Ref names a sealed snapshot.
type Ref struct {
	Generation uint64
	// Size is the sum of the files' sizes (the manifest excluded).
	Size int64
	// Digest is "sha256:<hex>" of manifest.json.
	Digest string
}

// Meta is what the caller tells Seal about a snapshot.
type Meta struct {
	Driver  string
	Spec    json.RawMessage
	Created time.Time
}

// Store is a node's snapshot directory.
type Store struct {
	dir string
}

// validID keeps sandbox IDs to one safe path element.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// Open returns the store over dir, creating it when missing.
func Open(dir string) (*Store, error) {
	if !filepath.IsAbs(dir) {
		return nil, errdefs.New(errdefs.InvalidArgument, "snapshot dir must be an absolute path, got %q", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open snapshot dir: %w", err)
	}
	// What Discard moved out and a crash kept from being deleted.
	if err := os.RemoveAll(filepath.Join(dir, trashDir)); err != nil {
		return nil, fmt.Errorf("open snapshot dir: empty its trash: %w", err)
	}
	return &Store{dir: dir}, nil
}

// ObjectsDir is the subdirectory of a sandbox snapshot directory that
// holds snapshot objects (see Objects); no sandbox ID may take it.
const ObjectsDir = "objects"

// ObjectGeneration is the one generation of a snapshot object.
const ObjectGeneration = 1

// Objects returns the store of snapshot objects, <dir>/objects: snapshots
// kept as objects of their own (den snapshot create), each under its
// snapshot ID as a single generation, ObjectGeneration, sealed and
// verified like a sandbox's.
func (s *Store) Objects() (*Store, error) {
	return Open(filepath.Join(s.dir, ObjectsDir))
}

// Dir is the directory of a sealed generation of sandbox id.
func (s *Store) Dir(id string, gen uint64) string {
	return filepath.Join(s.dir, id, strconv.FormatUint(gen, 10))
}

func (s *Store) sandboxDir(id string) (string, error) {
	if !validID.MatchString(id) {
		return "", errdefs.New(errdefs.InvalidArgument, "invalid sandbox id %q", id)
	}
	return filepath.Join(s.dir, id), nil
}

// Pending is a generation being written. Its directory belongs to the
// writer (the driver) until Seal or Abort.
type Pending struct {
	s   *Store
	id  string
	gen uint64
	// Dir is the empty directory the state is written into.
	Dir string
}

// Begin creates the empty directory of generation gen of sandbox id,
// removing a leftover of an interrupted attempt at the same generation.
// AlreadyExists when that generation is sealed already.
func (s *Store) Begin(id string, gen uint64) (*Pending, error) {
	sdir, err := s.sandboxDir(id)
	if err != nil {
		return nil, err
	}
	final := s.Dir(id, gen)
	if _, err := os.Lstat(final); err == nil {
		return nil, errdefs.New(errdefs.AlreadyExists, "snapshot %d of sandbox %s exists", gen, id)
	}
	if err := os.Mkdir(sdir, 0o700); err == nil {
		if err := syncDir(s.dir); err != nil {
			return nil, fmt.Errorf("begin snapshot of sandbox %s: %w", id, err)
		}
	} else if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("begin snapshot of sandbox %s: %w", id, err)
	}
	tmp := final + tmpSuffix
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("begin snapshot of sandbox %s: %w", id, err)
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("begin snapshot of sandbox %s: %w", id, err)
	}
	return &Pending{s: s, id: id, gen: gen, Dir: tmp}, nil
}

// Pending returns the unsealed directory of generation gen of sandbox id
// that a crash left behind; NotFound when there is none.
func (s *Store) Pending(id string, gen uint64) (*Pending, error) {
	if _, err := s.sandboxDir(id); err != nil {
		return nil, err
	}
	tmp := s.Dir(id, gen) + tmpSuffix
	if fi, err := os.Lstat(tmp); err != nil || !fi.IsDir() {
		return nil, errdefs.New(errdefs.NotFound, "no unsealed snapshot %d of sandbox %s", gen, id)
	}
	return &Pending{s: s, id: id, gen: gen, Dir: tmp}, nil
}

// Abort removes the pending directory.
func (p *Pending) Abort() error {
	if err := os.Remove(p.manifestTmp()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("abort snapshot %d of sandbox %s: %w", p.gen, p.id, err)
	}
	if err := os.RemoveAll(p.Dir); err != nil {
		return fmt.Errorf("abort snapshot %d of sandbox %s: %w", p.gen, p.id, err)
	}
	return nil
}

// Seal makes the pending generation durable and visible: it syncs and
// hashes every file, writes the manifest, renames the directory to its
// generation and syncs the sandbox directory. The files must be regular
// files (in subdirectories or not); anything else is an error, as is a
// file named like the manifest. On error the pending directory is left
// as it is (the caller may try to use or Abort it).
func (p *Pending) Seal(meta Meta) (Ref, error) {
	m := Manifest{Version: manifestVersion, Sandbox: p.id, Generation: p.gen, Created: meta.Created.UTC(),
		Driver: meta.Driver, Spec: meta.Spec}
	if err := p.removeInterruptedManifest(); err != nil {
		return Ref{}, fmt.Errorf("seal snapshot %d of sandbox %s: %w", p.gen, p.id, err)
	}
	files, err := hashTree(p.Dir)
	if err != nil {
		return Ref{}, fmt.Errorf("seal snapshot %d of sandbox %s: %w", p.gen, p.id, err)
	}
	m.Files = files
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Ref{}, fmt.Errorf("seal snapshot %d of sandbox %s: %w", p.gen, p.id, err)
	}
	if err := p.writeManifest(raw); err != nil {
		return Ref{}, fmt.Errorf("seal snapshot %d of sandbox %s: %w", p.gen, p.id, err)
	}
	if err := syncDir(p.Dir); err != nil {
		return Ref{}, fmt.Errorf("seal snapshot %d of sandbox %s: %w", p.gen, p.id, err)
	}
	final := p.s.Dir(p.id, p.gen)
	if err := os.Rename(p.Dir, final); err != nil {
		return Ref{}, fmt.Errorf("seal snapshot %d of sandbox %s: %w", p.gen, p.id, err)
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		return Ref{}, fmt.Errorf("seal snapshot %d of sandbox %s: %w", p.gen, p.id, err)
	}
	p.Dir = final
	return refOf(m, raw), nil
}

// writeManifest puts raw at Dir/manifest.json whole or not at all: it is
// written and synced beside the pending directory, then renamed in, so a
// kill -9 never leaves a partial manifest that a later Seal would take for
// the runtime's.
func (p *Pending) writeManifest(raw []byte) error {
	tmp := p.manifestTmp()
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := writeSynced(tmp, raw); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(p.Dir, ManifestName))
}

// manifestTmp is where writeManifest writes before the rename: beside
// the pending directory, named so no listing takes it for a generation.
func (p *Pending) manifestTmp() string {
	return p.s.Dir(p.id, p.gen) + ".manifest" + tmpSuffix
}

// removeInterruptedManifest removes the manifest an interrupted Seal of
// this generation wrote (den died between writing it and the rename), so
// a Seal after a restart starts over. A manifest.json that is not this
// generation's is the runtime's, and hashTree refuses it.
func (p *Pending) removeInterruptedManifest() error {
	path := filepath.Join(p.Dir, ManifestName)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var m Manifest
	if json.Unmarshal(raw, &m) != nil || m.Version != manifestVersion || m.Sandbox != p.id || m.Generation != p.gen {
		return nil
	}
	return os.Remove(path)
}

func refOf(m Manifest, raw []byte) Ref {
	var size int64
	for _, f := range m.Files {
		size += f.Size
	}
	sum := sha256.Sum256(raw)
	return Ref{Generation: m.Generation, Size: size, Digest: "sha256:" + hex.EncodeToString(sum[:])}
}

// hashTree syncs and hashes the regular files under dir (and syncs its
// subdirectories), sorted by name.
func hashTree(dir string) ([]File, error) {
	files := []File{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p) // p is under dir
		name := filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			if p != dir {
				return syncDir(p)
			}
			return nil
		case !d.Type().IsRegular():
			return fmt.Errorf("%q is not a regular file", name)
		case name == ManifestName:
			return fmt.Errorf("the runtime wrote a file named %s", ManifestName)
		}
		f, err := hashFile(p, true)
		if err != nil {
			return err
		}
		f.Name = name
		files = append(files, f)
		return nil
	})
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	return files, err
}

// hashFile reads p (never following a symbolic link), optionally syncing
// it, and returns its size and sha256. Without sync (a verification) a
// file this process hashed before and that has not changed since is not
// read again (digests.go).
func hashFile(p string, sync bool) (File, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|noFollow, 0)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	if sync {
		// The write-back and the hashing overlap: one waits on the disk,
		// the other reads the page cache (a sealed 256 MiB checkpoint
		// took the sum of both, ~600 ms, on the dev VM).
		synced := make(chan error, 1)
		go func() { synced <- f.Sync() }()
		got, err := hashOpen(f, false)
		if serr := <-synced; serr != nil {
			return File{}, serr
		}
		return got, err
	}
	return hashOpen(f, true)
}

// hashOpen hashes the open file f; with cached, a digest remembered for
// its unchanged content is used instead.
func hashOpen(f *os.File, cached bool) (File, error) {
	fi, err := f.Stat()
	if err != nil {
		return File{}, err
	}
	before, stamped := stampOf(fi)
	if stamped && cached {
		if sum, ok := knownDigest(before); ok {
			return File{Size: before.size, SHA256: sum}, nil
		}
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return File{}, err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if stamped {
		if fi, err := f.Stat(); err == nil {
			if after, ok := stampOf(fi); ok && after == before && after.size == n && settled(after) {
				rememberDigest(after, sum)
			}
		}
	}
	return File{Size: n, SHA256: sum}, nil
}

func writeSynced(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
