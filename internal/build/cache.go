package build

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// cacheVersion changes when the meaning of keys or entries changes; it is
// part of every key, so old entries simply miss.
const cacheVersion = "den-build-cache-v1"

// cache is the persistent build cache: one JSON file per step key in dir,
// each written to a temporary file and renamed into place, so concurrent
// builds (threads or processes) never see a partial entry; when two builds
// write the same key the last rename wins, and both entries are valid.
type cache struct {
	dir string
}

// cacheEntry is what a step with a given key produced.
type cacheEntry struct {
	// Layer is the diff ID of the layer the step made.
	Layer     string    `json:"layer"`
	CreatedBy string    `json:"created_by"`
	Created   time.Time `json:"created"`
}

func (c *cache) path(key string) string { return filepath.Join(c.dir, key+".json") }

// get returns the entry of key; ok is false when there is none or it cannot
// be read (a corrupt entry is a miss, and the next store replaces it).
func (c *cache) get(key string) (e cacheEntry, ok bool) {
	data, err := os.ReadFile(c.path(key))
	if err != nil {
		return cacheEntry{}, false
	}
	if err := json.Unmarshal(data, &e); err != nil || e.Layer == "" {
		return cacheEntry{}, false
	}
	return e, true
}

// put records the entry of key atomically.
func (c *cache) put(key string, e cacheEntry) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(c.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("write cache entry: %w", err)
	}
	_, werr := f.Write(data)
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write cache entry: %w", err)
	}
	if err := os.Rename(f.Name(), c.path(key)); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write cache entry: %w", err)
	}
	return nil
}

// staleTemp is the age after which a temporary file in the cache directory
// is a leftover of a crashed writer, not a write in progress.
const staleTemp = time.Hour

// removeStaleTemps removes leftovers of writers that crashed.
func (c *cache) removeStaleTemps(now time.Time) error {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		fi, err := e.Info()
		if err != nil || now.Sub(fi.ModTime()) < staleTemp {
			continue
		}
		if err := os.Remove(filepath.Join(c.dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// keyOf hashes parts unambiguously (each is length-prefixed) into a hex
// key.
func keyOf(parts ...string) string {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// keyOfList is keyOf for a list part inside a key.
func keyOfList(parts []string) string { return keyOf(parts...) }
