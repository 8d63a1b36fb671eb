package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// PruneReport says what Prune removed.
type PruneReport struct {
	// Layers is the number of unpacked layer directories removed.
	Layers int `json:"layers"`
	// Blobs is the number of blobs removed (layer blobs, configs, manifests).
	Blobs int `json:"blobs"`
	// Bytes is the disk space freed, abandoned partial downloads included.
	Bytes int64 `json:"bytes"`
}

// Lease pins the layers diffIDs (and their blobs) so that no GC (Prune,
// Remove, an import replacing a name) deletes them until release is
// called. A builder leases the layers it stacks while a build runs. Leasing
// a layer that is not stored is allowed: it keeps it once it is. release is
// idempotent; it also ends the hold CommitLayer puts on a new layer.
func (s *Store) Lease(diffIDs []string) (release func()) {
	s.pin(diffIDs)
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			for _, d := range diffIDs {
				delete(s.held, d)
			}
			s.mu.Unlock()
			s.unpin(diffIDs)
		})
	}
}

// pin protects layer diff IDs or blob digests from GC.
func (s *Store) pin(keys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		s.pinned[k]++
	}
}

func (s *Store) unpin(keys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		if s.pinned[k]--; s.pinned[k] <= 0 {
			delete(s.pinned, k)
		}
	}
}

// live is what GC must keep.
type live struct {
	layers, blobs map[string]bool
}

// liveSet computes what GC keeps: layers an image uses, pinned, held or
// mounted (a lower dir of a running sandbox's overlay);
// blobs an image uses (config, manifest, layer blobs), pinned, or the blob
// of a live layer. Preconditions: s.mu is held.
func (s *Store) liveSet() live {
	l := live{layers: s.idx.usedLayers(), blobs: map[string]bool{}}
	for k := range s.pinned {
		l.layers[k], l.blobs[k] = true, true
	}
	for k := range s.held {
		l.layers[k] = true
	}
	if mounted, err := overlayLowerDirs(); err != nil {
		s.log.Warn("list overlay mounts: layers in use may be removed", "err", err)
	} else {
		for d := range mounted {
			if filepath.Dir(d) == s.layersDir() {
				l.layers["sha256:"+filepath.Base(d)] = true
			}
		}
	}
	for _, img := range s.idx.Images {
		l.blobs[img.ID] = true
		if img.Digest != "" {
			l.blobs[img.Digest] = true
		}
		for _, b := range img.Blobs {
			l.blobs[b.Digest] = true
		}
	}
	for d, b := range s.idx.LayerBlobs {
		if l.layers[d] {
			l.blobs[b.Digest] = true
		}
	}
	return l
}

// gcTrash is what a GC pass took out of the store, to be deleted outside
// the lock.
type gcTrash struct {
	dirs   []string // layer directories moved under tmp/
	report PruneReport
}

// collect removes those of the candidate layers and blobs that are not
// live: a layer directory is moved under tmp/ (deleted by sweep, or by the
// next Open), a blob is unlinked, or with toPartial moved to partial/,
// where a pull may find it again but only after checking it in full.
// Preconditions: s.mu is held.
func (s *Store) collect(layers, blobs []string, toPartial bool) gcTrash {
	var trash gcTrash
	l := s.liveSet()
	for _, d := range layers {
		if l.layers[d] {
			continue
		}
		delete(s.idx.Layers, d)
		delete(s.idx.LayerBlobs, d)
		src := s.layerDir(d)
		if _, err := os.Lstat(src); err != nil {
			continue
		}
		trashDir, err := os.MkdirTemp(s.tmpDir(), "gc-")
		if err == nil {
			err = os.Rename(src, filepath.Join(trashDir, "layer"))
		}
		if err != nil {
			s.log.Warn("remove unused layer", "layer", d, "err", err)
			continue
		}
		trash.dirs = append(trash.dirs, trashDir)
		trash.report.Layers++
	}
	for _, b := range blobs {
		if l.blobs[b] {
			continue
		}
		n, err := s.blobSize(b)
		if err != nil {
			continue
		}
		if err := s.removeBlob(b, toPartial); err != nil {
			s.log.Warn("remove unused blob", "blob", b, "err", err)
			continue
		}
		trash.report.Blobs++
		trash.report.Bytes += n
	}
	return trash
}

// removeBlob unlinks the blob b, or moves it to partial/ with toPartial
// unless a partial download of it exists.
func (s *Store) removeBlob(b string, toPartial bool) error {
	if toPartial {
		partial := filepath.Join(s.partialDir(), hexOf(b))
		if _, err := os.Lstat(partial); errors.Is(err, fs.ErrNotExist) {
			return os.Rename(s.blobPath(b), partial)
		}
	}
	return os.Remove(s.blobPath(b))
}

// sweep deletes the layer directories collect moved aside and returns the
// report with their sizes added. A failure only leaves a directory under
// tmp/ that the next Open removes, so it is logged.
func (s *Store) sweep(trash gcTrash) PruneReport {
	r := trash.report
	for _, d := range trash.dirs {
		r.Bytes += treeSize(d)
		if err := removeTree(d); err != nil {
			s.log.Warn("remove unused layer", "path", d, "err", err)
		}
	}
	return r
}

// gcImage deletes the layers and blobs of img that nothing else uses.
// Preconditions: s.mu is held. The directories are deleted after the
// caller releases the lock, by the returned func.
func (s *Store) gcImage(img Image) func() {
	blobs := []string{img.ID}
	if img.Digest != "" {
		blobs = append(blobs, img.Digest)
	}
	for _, b := range img.Blobs {
		blobs = append(blobs, b.Digest)
	}
	for _, d := range img.Layers {
		if b, ok := s.idx.LayerBlobs[d]; ok {
			blobs = append(blobs, b.Digest)
		}
	}
	trash := s.collect(img.Layers, blobs, false)
	return func() { s.sweep(trash) }
}

// Prune removes every layer directory and blob that no image references and
// no lease, import, pull or CommitLayer hold pins, and abandoned partial
// downloads. It reports what it freed.
func (s *Store) Prune(ctx context.Context) (PruneReport, error) {
	layers, blobs, err := s.onDisk()
	if err != nil {
		return PruneReport{}, fmt.Errorf("prune images: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return PruneReport{}, err
	}
	s.mu.Lock()
	trash := s.collect(layers, blobs, false)
	err = s.commit(s.idx.clone())
	s.mu.Unlock()
	r := s.sweep(trash)
	r.Bytes += s.prunePartials()
	if err != nil {
		return r, fmt.Errorf("prune images: %w", err)
	}
	s.log.Info("pruned images", "layers", r.Layers, "blobs", r.Blobs, "bytes", r.Bytes)
	return r, nil
}

// onDisk lists the layer diff IDs and blob digests in the store directory.
func (s *Store) onDisk() (layers, blobs []string, err error) {
	for _, dir := range []struct {
		path string
		out  *[]string
	}{{s.layersDir(), &layers}, {s.blobsDir(), &blobs}} {
		entries, err := os.ReadDir(dir.path)
		if err != nil {
			return nil, nil, err
		}
		for _, e := range entries {
			if d := "sha256:" + e.Name(); validDigest(d) {
				*dir.out = append(*dir.out, d)
			}
		}
	}
	return layers, blobs, nil
}

// prunePartials removes the partial downloads no pull is working on and
// returns the bytes freed.
func (s *Store) prunePartials() int64 {
	entries, err := os.ReadDir(s.partialDir())
	if err != nil {
		return 0
	}
	var freed int64
	for _, e := range entries {
		unlock, ok := s.downloads.tryLock(e.Name())
		if !ok {
			continue
		}
		p := filepath.Join(s.partialDir(), e.Name())
		if fi, err := os.Lstat(p); err == nil && os.Remove(p) == nil {
			freed += fi.Size()
		}
		unlock()
	}
	return freed
}

// removeOrphans deletes the layer directories no recorded image
// references, what an import or pull killed before recording left behind,
// and moves such blobs to partial/: a pull that resumes finds them there
// (and checks them), Prune deletes them. Run by Open, before anything can
// pin or hold content.
func (s *Store) removeOrphans() error {
	layers, blobs, err := s.onDisk()
	if err != nil {
		return err
	}
	s.mu.Lock()
	// Layers recorded with their blob are complete content (a layer a
	// build committed and its cache still names): they stay until Prune.
	cached := map[string]bool{}
	for d, b := range s.idx.LayerBlobs {
		if !s.held[d] && s.hasBlob(b.Digest) {
			cached[d], s.held[d] = true, true
		}
	}
	trash := s.collect(layers, blobs, true)
	for d := range cached {
		delete(s.held, d)
	}
	s.mu.Unlock()
	r := s.sweep(trash)
	if r.Layers+r.Blobs > 0 {
		s.log.Info("removed unreferenced content", "layers", r.Layers, "blobs", r.Blobs)
	}
	return nil
}

// treeSize is the total size of the regular files under root.
func treeSize(root string) int64 {
	var n int64
	filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// keyedMutex is a set of mutexes, one per key, made on demand.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]chan struct{}
}

// lock waits until it holds key, or ctx ends.
func (k *keyedMutex) lock(ctx context.Context, key string) (unlock func(), err error) {
	for {
		k.mu.Lock()
		if k.locks == nil {
			k.locks = map[string]chan struct{}{}
		}
		ch, busy := k.locks[key]
		if !busy {
			ch = make(chan struct{})
			k.locks[key] = ch
			k.mu.Unlock()
			return k.unlocker(key, ch), nil
		}
		k.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// tryLock takes key if it is free.
func (k *keyedMutex) tryLock(key string) (unlock func(), ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.locks == nil {
		k.locks = map[string]chan struct{}{}
	}
	if _, busy := k.locks[key]; busy {
		return nil, false
	}
	ch := make(chan struct{})
	k.locks[key] = ch
	return k.unlocker(key, ch), true
}

func (k *keyedMutex) unlocker(key string, ch chan struct{}) func() {
	return func() {
		k.mu.Lock()
		delete(k.locks, key)
		k.mu.Unlock()
		close(ch)
	}
}
