// Package image is the node's image store: it imports container images
// (docker-archive and OCI image-layout tarballs), unpacks each layer once into
// a directory in overlayfs format, records images in a small JSON index and
// hands the driver a driver.Image whose Layers it can stack with overlayfs.
//
// Layout of the store directory:
//
//	index.json          the image index (written atomically)
//	layers/<hex>/       one unpacked layer per diff ID, shared between images
//	tmp/                work space of imports in progress; emptied by Open
//
// Crash safety: content is only ever made visible by a rename of a complete,
// synced directory or file. A layer directory that no image in the index
// references (an import killed between unpacking and recording) is removed by
// Open, as is everything under tmp/.
//
// Importing needs root (CAP_CHOWN, CAP_MKNOD, CAP_SYS_ADMIN): layers keep
// their ownership and device nodes, and overlayfs whiteouts and opaque
// directories are character devices and trusted.* xattrs.
package image

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
)

// Image is an image recorded in the store.
type Image struct {
	// Name is the image's name ("base", "docker.io/library/alpine:3.20").
	// Several names may share one ID.
	Name string `json:"name"`
	// ID is "sha256:<hex>" of the image's config blob.
	ID string `json:"id"`
	// Size is the total unpacked size of the layers in bytes.
	Size      int64     `json:"size"`
	CreatedAt time.Time `json:"created_at"`
	// Layers are the diff IDs of the layers, bottom first (the order of the
	// config's rootfs.diff_ids). Rootfs returns them topmost first.
	Layers []string `json:"layers"`
	Config Config   `json:"config"`
}

// Config is the part of an image's runtime configuration den uses.
type Config struct {
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	// User is the default user (name or uid); empty is root.
	User       string   `json:"user,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
}

// Progress reports the advance of a long operation, for progress bars.
type Progress struct {
	// Phase names the step ("reading", "unpacking", "retrieving", ...).
	Phase string
	// Current and Total count bytes or items in the phase; Total is 0 when unknown.
	Current, Total int64
	// Detail names the item being worked on (a layer digest, a package).
	Detail string
}

// Store is the image store of one node. Its methods are safe for concurrent use.
type Store struct {
	dir string
	log *slog.Logger

	mu  sync.Mutex
	idx index
	// pinned counts in-flight imports per layer diff ID, so Remove never
	// deletes a layer an import is about to record.
	pinned map[string]int
}

// Open opens (creating it if needed) the image store in dir, usually
// <data-dir>/images. It removes leftovers of interrupted imports.
func Open(dir string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	s := &Store{dir: dir, log: logger, pinned: map[string]int{}}
	for _, d := range []string{dir, s.layersDir(), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("open image store: %w", err)
		}
	}
	if err := loadIndex(s.indexPath(), &s.idx); err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	if err := s.cleanTmp(); err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	if err := s.removeOrphanLayers(); err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	return s, nil
}

func (s *Store) layersDir() string { return filepath.Join(s.dir, "layers") }
func (s *Store) tmpDir() string    { return filepath.Join(s.dir, "tmp") }
func (s *Store) indexPath() string { return filepath.Join(s.dir, "index.json") }
func (s *Store) layerDir(diffID string) string {
	return filepath.Join(s.layersDir(), strings.TrimPrefix(diffID, "sha256:"))
}

// cleanTmp removes everything under tmp/ (imports that never finished) and
// index files a crash left half-written.
func (s *Store) cleanTmp() error {
	stale, _ := filepath.Glob(filepath.Join(s.dir, ".index.json.tmp-*"))
	for _, f := range stale {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return err
	}
	for _, e := range entries {
		s.log.Info("removing leftover of interrupted import", "path", e.Name())
		if err := removeTree(filepath.Join(s.tmpDir(), e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// removeOrphanLayers removes layer directories no recorded image uses.
func (s *Store) removeOrphanLayers() error {
	entries, err := os.ReadDir(s.layersDir())
	if err != nil {
		return err
	}
	used := s.idx.usedLayers()
	for _, e := range entries {
		if used["sha256:"+e.Name()] {
			continue
		}
		s.log.Info("removing unreferenced layer", "layer", e.Name())
		if err := removeTree(filepath.Join(s.layersDir(), e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// Get returns the image ref names: a name ("base", "alpine" for
// "alpine:latest"), a full ID or a unique prefix of an ID's hex digest.
// It fails with NotFound when nothing matches and InvalidArgument when an ID
// prefix is ambiguous.
func (s *Store) Get(ref string) (*Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.idx.lookup(ref)
	if err != nil {
		return nil, fmt.Errorf("get image: %w", err)
	}
	c := img.clone()
	return &c, nil
}

// List returns every recorded image, one entry per name, sorted by name.
func (s *Store) List() ([]Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Image, 0, len(s.idx.Images))
	for _, img := range s.idx.Images {
		out = append(out, img.clone())
	}
	slices.SortFunc(out, func(a, b Image) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Tag gives the image ref another name. It fails with AlreadyExists when the
// name already belongs to a different image (Remove it first); tagging an
// image with a name it already has is a no-op.
func (s *Store) Tag(ref, name string) error {
	if err := validateName(name); err != nil {
		return fmt.Errorf("tag image %s: %w", ref, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.idx.lookup(ref)
	if err != nil {
		return fmt.Errorf("tag image: %w", err)
	}
	if other := s.idx.byName(name); other != nil {
		if other.ID == img.ID {
			return nil
		}
		return errdefs.New(errdefs.AlreadyExists, "tag image %s: name %q is used by image %s", ref, name, other.ID)
	}
	next := s.idx.clone()
	tagged := img.clone()
	tagged.Name = name
	next.Images = append(next.Images, tagged)
	return s.commit(next)
}

// Remove removes the image ref: by name, that name only; by ID, every name of
// the image. Layers no remaining image uses are deleted. NotFound if absent.
func (s *Store) Remove(ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.idx.lookup(ref)
	if err != nil {
		return fmt.Errorf("remove image: %w", err)
	}
	byName := s.idx.lookupName(ref) != nil
	next := s.idx.clone()
	next.Images = slices.DeleteFunc(next.Images, func(i Image) bool {
		if byName {
			return i.Name == img.Name
		}
		return i.ID == img.ID
	})
	if err := s.commit(next); err != nil {
		return err
	}
	s.log.Info("removed image", "ref", ref, "id", img.ID)
	s.gcLayers(img.Layers)
	return nil
}

// gcLayers deletes those of layers that no image uses and no import pins.
// Preconditions: s.mu is held. A failure only leaves an orphan that the
// next Open removes, so it is logged, not returned.
func (s *Store) gcLayers(layers []string) {
	used := s.idx.usedLayers()
	for _, l := range layers {
		if used[l] || s.pinned[l] > 0 {
			continue
		}
		delete(s.idx.Layers, l)
		if err := removeTree(s.layerDir(l)); err != nil {
			s.log.Warn("remove unused layer", "layer", l, "err", err)
		}
	}
}

// commit makes next the index, on disk first. Preconditions: s.mu is held.
func (s *Store) commit(next index) error {
	if err := writeIndex(s.indexPath(), &next); err != nil {
		return fmt.Errorf("write image index: %w", err)
	}
	s.idx = next
	return nil
}

// Rootfs returns what a driver needs to build a sandbox on the image ref:
// the absolute layer directories topmost first, and the image's Env,
// WorkingDir and User. It fails with FailedPrecondition when a layer
// directory is missing from disk.
func (s *Store) Rootfs(ref string) (driver.Image, error) {
	img, err := s.Get(ref)
	if err != nil {
		return driver.Image{}, err
	}
	out := driver.Image{
		Ref:        img.Name,
		Env:        img.Config.Env,
		WorkingDir: img.Config.WorkingDir,
		User:       img.Config.User,
	}
	for _, l := range slices.Backward(img.Layers) {
		dir := s.layerDir(l)
		if _, err := os.Stat(dir); err != nil {
			return driver.Image{}, errdefs.Wrap(errdefs.FailedPrecondition, err, "rootfs of image %s: layer %s missing", ref, l)
		}
		out.Layers = append(out.Layers, dir)
	}
	return out, nil
}
