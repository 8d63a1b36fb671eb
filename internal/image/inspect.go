package image

import (
	"encoding/json"
	"fmt"

	"github.com/denhq/den/internal/errdefs"
)

// Details is everything the store knows of an image, for `den image
// inspect`. The embedded Image's Layers (diff IDs) is shadowed by Layers.
type Details struct {
	Image
	// Layers details the layers, bottom first.
	Layers []LayerDetails `json:"layers"`
	// RawConfig is the image's OCI config as stored; nil for an image
	// recorded by an older den.
	RawConfig json.RawMessage `json:"raw_config,omitempty"`
	// RawManifest is the image's manifest as stored (and pushed); nil when
	// the image has none.
	RawManifest json.RawMessage `json:"raw_manifest,omitempty"`
}

// LayerDetails describes one layer of an image.
type LayerDetails struct {
	// DiffID is "sha256:<hex>" of the uncompressed layer tar.
	DiffID string `json:"diff_id"`
	// Digest, Size and MediaType describe the layer's blob; empty for an
	// image recorded by an older den.
	Digest    string `json:"digest,omitempty"`
	Size      int64  `json:"size,omitempty"`
	MediaType string `json:"media_type,omitempty"`
	// UnpackedSize is the size of the uncompressed layer tar in bytes.
	UnpackedSize int64 `json:"unpacked_size"`
}

// Inspect returns the details of the image ref (a name or ID, as Get). It
// fails with NotFound when nothing matches.
func (s *Store) Inspect(ref string) (*Details, error) {
	s.mu.Lock()
	found, err := s.idx.lookup(ref)
	if err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("inspect image: %w", err)
	}
	img := found.clone()
	d := &Details{Image: img}
	for i, l := range img.Layers {
		ld := LayerDetails{DiffID: l, UnpackedSize: s.idx.Layers[l]}
		if i < len(img.Blobs) {
			b := img.Blobs[i]
			ld.Digest, ld.Size, ld.MediaType = b.Digest, b.Size, b.MediaType
		}
		d.Layers = append(d.Layers, ld)
	}
	s.mu.Unlock()
	if d.RawConfig, err = s.optionalBlob(img.ID); err != nil {
		return nil, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	if img.Digest != "" {
		if d.RawManifest, err = s.optionalBlob(img.Digest); err != nil {
			return nil, fmt.Errorf("inspect image %s: %w", ref, err)
		}
	}
	return d, nil
}

// optionalBlob reads a config or manifest blob; nil when it is not stored.
func (s *Store) optionalBlob(digest string) (json.RawMessage, error) {
	data, err := s.readBlob(digest)
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !json.Valid(data) {
		return nil, errdefs.New(errdefs.InvalidArgument, "blob %s is not JSON", digest)
	}
	return data, nil
}
