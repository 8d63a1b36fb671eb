package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/denhq/den/internal/errdefs"
)

// indexVersion is the version of index.json this code writes and reads.
const indexVersion = 1

// index is the content of index.json.
type index struct {
	Version int     `json:"version"`
	Images  []Image `json:"images"`
	// Layers maps a diff ID to the unpacked size of the layer in bytes.
	Layers map[string]int64 `json:"layers"`
	// LayerBlobs maps a diff ID to the blob the store keeps for the layer:
	// what Create puts in the manifests of new images built on it. Layers
	// recorded by an older den have none.
	LayerBlobs map[string]Layer `json:"layer_blobs,omitempty"`
}

func loadIndex(path string, idx *index) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		*idx = index{Version: indexVersion, Layers: map[string]int64{}, LayerBlobs: map[string]Layer{}}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read image index: %w", err)
	}
	if err := json.Unmarshal(data, idx); err != nil {
		return fmt.Errorf("parse image index %s: %w", path, err)
	}
	if idx.Version != indexVersion {
		return errdefs.New(errdefs.FailedPrecondition, "image index %s has version %d, want %d", path, idx.Version, indexVersion)
	}
	if idx.Layers == nil {
		idx.Layers = map[string]int64{}
	}
	if idx.LayerBlobs == nil {
		idx.LayerBlobs = map[string]Layer{}
	}
	return nil
}

func writeIndex(path string, idx *index) error {
	data, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, data, 0o644)
}

func (idx *index) clone() index {
	c := index{Version: idx.Version, Layers: maps.Clone(idx.Layers), LayerBlobs: maps.Clone(idx.LayerBlobs)}
	for _, img := range idx.Images {
		c.Images = append(c.Images, img.clone())
	}
	return c
}

func (idx *index) usedLayers() map[string]bool {
	used := map[string]bool{}
	for _, img := range idx.Images {
		for _, l := range img.Layers {
			used[l] = true
		}
	}
	return used
}

func (idx *index) byName(name string) *Image {
	if name == "" {
		return nil
	}
	for i := range idx.Images {
		if idx.Images[i].Name == name {
			return &idx.Images[i]
		}
	}
	return nil
}

// lookup resolves ref: a name (see lookupName), then a full ID or a unique
// prefix of an ID's hex digest.
func (idx *index) lookup(ref string) (*Image, error) {
	if img := idx.lookupName(ref); img != nil {
		return img, nil
	}
	hex := strings.TrimPrefix(ref, "sha256:")
	if hex == "" || strings.Trim(hex, "0123456789abcdef") != "" {
		return nil, errdefs.New(errdefs.NotFound, "image %q not found", ref)
	}
	var found *Image
	for i := range idx.Images {
		img := &idx.Images[i]
		if !strings.HasPrefix(strings.TrimPrefix(img.ID, "sha256:"), hex) {
			continue
		}
		if found != nil && found.ID != img.ID {
			return nil, errdefs.New(errdefs.InvalidArgument, "image ID prefix %q is ambiguous", ref)
		}
		if found == nil {
			found = img
		}
	}
	if found == nil {
		return nil, errdefs.New(errdefs.NotFound, "image %q not found", ref)
	}
	return found, nil
}

// lookupName finds the image named ref, or ref with ":latest" added or
// removed, or ref normalised as a registry reference; nil if none.
func (idx *index) lookupName(ref string) *Image {
	if ref == "" {
		return nil // untagged images have no name to find them by
	}
	if img := idx.byName(ref); img != nil {
		return img
	}
	if img := idx.byName(withLatest(ref)); img != nil {
		return img
	}
	if short, ok := strings.CutSuffix(ref, ":latest"); ok {
		if img := idx.byName(short); img != nil {
			return img
		}
	}
	// "alpine" also finds a pulled "docker.io/library/alpine:latest".
	if full, err := normalizeName(ref); err == nil && full != ref {
		return idx.byName(full)
	}
	return nil
}

// dropUntagged removes the untagged entry of the image id, if any: the image
// got a name.
func (idx *index) dropUntagged(id string) {
	idx.Images = slices.DeleteFunc(idx.Images, func(i Image) bool { return i.Name == "" && i.ID == id })
}

// hasID reports whether an image with the ID id is recorded.
func (idx *index) hasID(id string) bool {
	return slices.ContainsFunc(idx.Images, func(i Image) bool { return i.ID == id })
}

func (img *Image) clone() Image {
	c := *img
	c.Layers = slices.Clone(img.Layers)
	c.Config.Env = slices.Clone(img.Config.Env)
	c.Config.Entrypoint = slices.Clone(img.Config.Entrypoint)
	c.Config.Cmd = slices.Clone(img.Config.Cmd)
	c.Config.ExposedPorts = slices.Clone(img.Config.ExposedPorts)
	c.Config.Labels = maps.Clone(img.Config.Labels)
	c.Config.Shell = slices.Clone(img.Config.Shell)
	c.Blobs = slices.Clone(img.Blobs)
	c.History = slices.Clone(img.History)
	return c
}

// withLatest adds ":latest" to a name without a tag or digest.
func withLatest(name string) string {
	if strings.Contains(name, "@") || strings.Contains(name[strings.LastIndex(name, "/")+1:], ":") {
		return name
	}
	return name + ":latest"
}

// validateName accepts image names: printable, no spaces, at most 255 bytes.
func validateName(name string) error {
	if name == "" {
		return errdefs.New(errdefs.InvalidArgument, "image name is empty")
	}
	if len(name) > 255 {
		return errdefs.New(errdefs.InvalidArgument, "image name is longer than 255 bytes")
	}
	for _, r := range name {
		if r <= ' ' || r == 0x7f {
			return errdefs.New(errdefs.InvalidArgument, "image name %q contains a space or control character", name)
		}
	}
	if strings.HasPrefix(name, "sha256:") {
		return errdefs.New(errdefs.InvalidArgument, "image name %q looks like an ID", name)
	}
	return nil
}

// writeFileAtomic writes data to path through a synced temporary file in the
// same directory and a rename, then syncs the directory.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
