package image

import (
	"encoding/json"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// configOf is the part of an OCI image config den records. Empty lists and
// maps are nil, so that an image reads back from index.json as it was.
func configOf(c v1.Config) Config {
	cfg := Config{
		Env: nonEmpty(c.Env), WorkingDir: c.WorkingDir, User: c.User,
		Entrypoint: nonEmpty(c.Entrypoint), Cmd: nonEmpty(c.Cmd),
		Shell: nonEmpty(c.Shell), StopSignal: c.StopSignal,
	}
	if len(c.Labels) > 0 {
		cfg.Labels = maps.Clone(c.Labels)
	}
	if len(c.ExposedPorts) > 0 {
		cfg.ExposedPorts = slices.Sorted(maps.Keys(c.ExposedPorts))
	}
	return cfg
}

func nonEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

// ociConfig is cfg as the config section of an OCI image config.
func ociConfig(cfg Config) v1.Config {
	c := v1.Config{
		Env: cfg.Env, WorkingDir: cfg.WorkingDir, User: cfg.User,
		Entrypoint: cfg.Entrypoint, Cmd: cfg.Cmd,
		Labels: cfg.Labels, Shell: cfg.Shell, StopSignal: cfg.StopSignal,
	}
	if len(cfg.ExposedPorts) > 0 {
		c.ExposedPorts = map[string]struct{}{}
		for _, p := range cfg.ExposedPorts {
			c.ExposedPorts[p] = struct{}{}
		}
	}
	return c
}

func historyOf(h []v1.History) []History {
	var out []History
	for _, e := range h {
		out = append(out, History{Created: e.Created.UTC(), CreatedBy: e.CreatedBy, Comment: e.Comment, EmptyLayer: e.EmptyLayer})
	}
	return out
}

// configFile is the OCI config of a den-built image: linux on this
// machine's architecture, created at the latest time in history, or now.
// History entries without a time get the creation time.
func configFile(cfg Config, diffIDs []v1.Hash, history []History) *v1.ConfigFile {
	var now time.Time
	for _, h := range history {
		if h.Created.After(now) {
			now = h.Created.UTC()
		}
	}
	if now.IsZero() {
		now = time.Now().UTC()
	}
	cf := &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      v1.Time{Time: now},
		RootFS:       v1.RootFS{Type: "layers", DiffIDs: diffIDs},
		Config:       ociConfig(cfg),
	}
	for _, h := range history {
		if h.Created.IsZero() {
			h.Created = now
		}
		cf.History = append(cf.History, v1.History{Created: v1.Time{Time: h.Created}, CreatedBy: h.CreatedBy, Comment: h.Comment, EmptyLayer: h.EmptyLayer})
	}
	return cf
}

// configBlob marshals a config file made by configFile.
func configBlob(cf *v1.ConfigFile) ([]byte, error) {
	raw, err := json.Marshal(cf)
	if err != nil {
		return nil, fmt.Errorf("encode image config: %w", err)
	}
	return raw, nil
}

// manifestOf is the OCI manifest of an image whose config is rawConfig and
// whose layers are blobs.
func manifestOf(rawConfig []byte, blobs []Layer) ([]byte, error) {
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config: v1.Descriptor{
			MediaType: types.OCIConfigJSON,
			Size:      int64(len(rawConfig)),
			Digest:    mustHash(digestOf(rawConfig)),
		},
		Layers: []v1.Descriptor{},
	}
	for _, b := range blobs {
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: ociLayerType(b.MediaType), Size: b.Size, Digest: mustHash(b.Digest)})
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode image manifest: %w", err)
	}
	return raw, nil
}

// storeMetadata stores the config blob of img and its manifest (rawManifest,
// or one made from the config and img.Blobs when nil) and sets img.Digest.
// An image with layers but no blobs gets no manifest. The blobs are pinned
// in pins before they are written.
func (s *Store) storeMetadata(img *Image, rawConfig, rawManifest []byte, pins *pinSet) error {
	pins.add(img.ID)
	if _, err := s.writeBlob(rawConfig); err != nil {
		return fmt.Errorf("store image config: %w", err)
	}
	if len(img.Blobs) != len(img.Layers) {
		img.Blobs, img.Digest = nil, ""
		return nil
	}
	if rawManifest == nil {
		var err error
		if rawManifest, err = manifestOf(rawConfig, img.Blobs); err != nil {
			return err
		}
	}
	img.Digest = digestOf(rawManifest)
	pins.add(img.Digest)
	if _, err := s.writeBlob(rawManifest); err != nil {
		return fmt.Errorf("store image manifest: %w", err)
	}
	return nil
}

// ociLayerType is the OCI media type of a layer blob of media type mt: a
// Docker layer type has an OCI twin for the same bytes.
func ociLayerType(mt string) types.MediaType {
	switch types.MediaType(mt) {
	case types.DockerLayer:
		return types.OCILayer
	case types.DockerUncompressedLayer:
		return types.OCIUncompressedLayer
	default:
		return types.MediaType(mt)
	}
}
