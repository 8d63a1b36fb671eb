package image

import (
	"bytes"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/denhq/den/internal/errdefs"
)

// Annotations that name an image in an OCI layout's index.json.
const (
	annotationContainerdName = "io.containerd.image.name"
	annotationRefName        = "org.opencontainers.image.ref.name"
)

// source is an image read from an archive, with the name to record it under.
type source struct {
	img  v1.Image
	name string
	// ociLayout says img comes from an OCI layout, whose manifest is worth
	// keeping (a docker archive has none of its own).
	ociLayout bool
}

// manifest returns the source's own manifest when it describes exactly the
// stored blobs (whose media types it then sets to the manifest's), else nil
// (the store then writes one).
func (src *source) manifest(blobs []Layer) []byte {
	if !src.ociLayout {
		return nil
	}
	raw, err := src.img.RawManifest()
	if err != nil {
		return nil
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil || len(m.Layers) != len(blobs) {
		return nil
	}
	for i, l := range m.Layers {
		if l.Digest.String() != blobs[i].Digest || l.Size != blobs[i].Size {
			return nil
		}
	}
	for i, l := range m.Layers {
		blobs[i].MediaType = string(l.MediaType)
	}
	return raw
}

// pickOCIImage chooses the image of an OCI layout: the only top-level entry,
// or the one whose name annotation is name. A multi-platform index is
// resolved to linux on this machine's architecture.
func pickOCIImage(idx v1.ImageIndex, name string) (*source, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "read OCI index")
	}
	desc, err := pickDescriptor(m.Manifests, name)
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = descriptorName(desc)
		if name == "" {
			return nil, errdefs.New(errdefs.InvalidArgument, "OCI layout names no image: give the image a name")
		}
		if err := validateName(name); err != nil {
			return nil, err
		}
	}
	img, err := resolveImage(idx, desc)
	if err != nil {
		return nil, err
	}
	return &source{img: img, name: name, ociLayout: true}, nil
}

func pickDescriptor(descs []v1.Descriptor, name string) (v1.Descriptor, error) {
	if len(descs) == 1 {
		return descs[0], nil
	}
	var found []v1.Descriptor
	for _, d := range descs {
		if name != "" && (descriptorName(d) == name || d.Annotations[annotationRefName] == name) {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		return v1.Descriptor{}, errdefs.New(errdefs.InvalidArgument, "OCI layout holds %d images and none is uniquely named %q", len(descs), name)
	}
	return found[0], nil
}

func descriptorName(d v1.Descriptor) string {
	if n := d.Annotations[annotationContainerdName]; n != "" {
		return n
	}
	return d.Annotations[annotationRefName]
}

// resolveImage returns the image desc points at, descending into an index
// for the platform linux/GOARCH.
func resolveImage(idx v1.ImageIndex, desc v1.Descriptor) (v1.Image, error) {
	switch {
	case desc.MediaType.IsImage():
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "read OCI image %s", desc.Digest)
		}
		return img, nil
	case desc.MediaType.IsIndex():
		child, err := idx.ImageIndex(desc.Digest)
		if err != nil {
			return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "read OCI index %s", desc.Digest)
		}
		m, err := child.IndexManifest()
		if err != nil {
			return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "read OCI index %s", desc.Digest)
		}
		want := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
		for _, d := range m.Manifests {
			if d.Platform != nil && d.Platform.Satisfies(want) && d.MediaType.IsImage() {
				return resolveImage(child, d)
			}
		}
		return nil, errdefs.New(errdefs.InvalidArgument, "OCI index %s has no image for %s", desc.Digest, want.String())
	default:
		return nil, errdefs.New(errdefs.InvalidArgument, "OCI descriptor %s has unsupported media type %q", desc.Digest, desc.MediaType)
	}
}
