// Package image is the node's image store: it imports container images
// (docker-archive and OCI image-layout tarballs), unpacks each layer once into
// a directory in overlayfs format, records images in a small JSON index and
// hands the driver a driver.Image whose Layers it can stack with overlayfs.
//
// It also pulls images from and pushes them to OCI registries, exports them
// as archives, and gives a Dockerfile builder what it needs: committing an
// overlayfs upper directory as a layer, creating an image from stored layers,
// and leases that keep layers alive while a build uses them.
//
// Layout of the store directory:
//
//	index.json          the image index (written atomically)
//	layers/<hex>/       one unpacked layer per diff ID, shared between images
//	blobs/sha256/<hex>  content-addressed blobs: compressed layers, image
//	                    configs and manifests, each verified before it lands
//	partial/<hex>       downloads in progress, keyed by blob digest; never
//	                    trusted, only resumed (and verified in full) by a pull
//	tmp/                work space of imports in progress; emptied by Open
//
// Crash safety: content is only ever made visible by a rename of a complete,
// synced directory or file. A layer directory that no image in the index
// references (an import killed between unpacking and recording) is removed
// by Open, as is everything under tmp/; such a blob is moved to partial/,
// where a later pull finds it but checks it in full before use.
//
// Images recorded by a den that predates the blob store have no blobs: they
// run as before, but Push and Export refuse them until they are re-imported
// or rebuilt.
//
// Importing needs root (CAP_CHOWN, CAP_MKNOD, CAP_SYS_ADMIN): layers keep
// their ownership and device nodes, and overlayfs whiteouts and opaque
// directories are character devices and trusted.* xattrs.
package image

import (
	"cmp"
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
	// Several names may share one ID. It is empty for an untagged image
	// (made by Create without a name), which only its ID finds.
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
	// Digest is "sha256:<hex>" of the image's manifest (the registry's
	// digest for a pulled image); empty for images recorded by an older den.
	Digest string `json:"digest,omitempty"`
	// Blobs are the compressed blobs of the layers, aligned with Layers;
	// empty for images recorded by an older den.
	Blobs []Layer `json:"blobs,omitempty"`
	// History is the config's history, oldest first.
	History []History `json:"history,omitempty"`
}

// Layer describes the blob of one layer of an image.
type Layer struct {
	// DiffID is "sha256:<hex>" of the uncompressed layer tar.
	DiffID string `json:"diff_id"`
	// Digest is "sha256:<hex>" of the blob as stored and pushed (usually gzip).
	Digest string `json:"digest"`
	// Size is the size of the blob in bytes.
	Size int64 `json:"size"`
	// MediaType is the blob's media type in the image manifest.
	MediaType string `json:"media_type"`
}

// History is one entry of an image's history: the step that made a layer,
// or changed only the config (EmptyLayer).
type History struct {
	// Created is when the step ran; zero when unknown.
	Created time.Time `json:"created,omitzero"`
	// CreatedBy is the step ("RUN make", "COPY . /app").
	CreatedBy string `json:"created_by,omitempty"`
	Comment   string `json:"comment,omitempty"`
	// EmptyLayer is true for a step that made no layer (ENV, CMD).
	EmptyLayer bool `json:"empty_layer,omitempty"`
}

// Config is the part of an image's runtime configuration den uses.
type Config struct {
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	// User is the default user (name or uid); empty is root.
	User       string   `json:"user,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	// ExposedPorts are "port/proto" ("8080/tcp"), sorted.
	ExposedPorts []string          `json:"exposed_ports,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	// Shell is the shell of RUN instructions in shell form (["/bin/sh", "-c"]).
	Shell      []string `json:"shell,omitempty"`
	StopSignal string   `json:"stop_signal,omitempty"`
}

// Progress reports the advance of a long operation, for progress bars.
type Progress struct {
	// Phase names the step: "reading", "unpacking" (imports); "resolving",
	// "downloading", "exists", "unpacking" (Pull); "uploading", "exists"
	// (Push); "retrieving" ... (BuildBase).
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
	// pinned counts holders per layer diff ID or blob digest (imports and
	// pulls in flight, leases, pushes), so GC never deletes what one of them
	// is about to record or read.
	pinned map[string]int
	// held are the layers CommitLayer made that no image references yet:
	// GC keeps them until an image does or a lease on them is released.
	held map[string]bool
	// downloads serialises the downloads of a blob (by hex digest): one
	// partial file has one writer.
	downloads keyedMutex
}

// Open opens (creating it if needed) the image store in dir, usually
// <data-dir>/images. It removes leftovers of interrupted imports and pulls
// (work files, unreferenced layers and blobs) but keeps partial downloads
// for a later pull to resume, and layers recorded with their blob (a
// build's cache) until Prune.
func Open(dir string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	s := &Store{dir: dir, log: logger, pinned: map[string]int{}, held: map[string]bool{}}
	for _, d := range []string{dir, s.layersDir(), s.tmpDir(), s.blobsDir(), s.partialDir()} {
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
	if err := s.removeOrphans(); err != nil {
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
	next.dropUntagged(tagged.ID)
	next.Images = append(next.Images, tagged)
	return s.commit(next)
}

// Remove removes the image ref: by name, that name only; by ID, every name of
// the image. Layers and blobs no remaining image uses (and no lease pins)
// are deleted. NotFound if absent.
func (s *Store) Remove(ref string) error {
	sweep, err := s.remove(ref)
	if err != nil {
		return err
	}
	sweep()
	return nil
}

// remove drops ref from the index and returns the deletion of its unused
// layer directories, to run without the lock.
func (s *Store) remove(ref string) (sweep func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.idx.lookup(ref)
	if err != nil {
		return nil, fmt.Errorf("remove image: %w", err)
	}
	removed := img.clone()
	byName := s.idx.lookupName(ref) != nil
	next := s.idx.clone()
	next.Images = slices.DeleteFunc(next.Images, func(i Image) bool {
		if byName {
			return i.Name == removed.Name
		}
		return i.ID == removed.ID
	})
	if err := s.commit(next); err != nil {
		return nil, err
	}
	s.log.Info("removed image", "ref", ref, "id", removed.ID)
	return s.gcImage(removed), nil
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
// WorkingDir, User and Command (ENTRYPOINT then CMD). It fails with
// FailedPrecondition when a layer directory is missing from disk.
func (s *Store) Rootfs(ref string) (driver.Image, error) {
	img, err := s.Get(ref)
	if err != nil {
		return driver.Image{}, err
	}
	out := driver.Image{
		Ref:        cmp.Or(img.Name, img.ID),
		Env:        img.Config.Env,
		WorkingDir: img.Config.WorkingDir,
		User:       img.Config.User,
		// Docker's rule: ENTRYPOINT, then CMD as its arguments (or CMD alone).
		Command: append(slices.Clone(img.Config.Entrypoint), img.Config.Cmd...),
	}
	if len(out.Command) == 0 {
		out.Command = nil
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
