package image

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/denhq/den/internal/errdefs"
)

// PushOptions configures Push.
type PushOptions struct {
	// Insecure allows plain HTTP to the registry.
	Insecure bool
	// Username and Password are basic-auth credentials, also used with the
	// registry's token service when it asks for a bearer token.
	Username, Password string
}

// Push uploads the image ref (a name or ID) to the registry reference dest
// ("127.0.0.1:5000/team/app:v1"; "" pushes to the image's own name) and
// returns the manifest digest. The stored blobs and manifest are sent as
// they are, so the pushed image has the same ID, diff IDs and manifest
// digest. Blobs the registry has already are not sent again.
//
// It fails with FailedPrecondition for an image recorded by an older den
// without its blobs (re-import or rebuild it), and with the registry error
// kinds Pull documents. progress, which may be nil, gets "uploading"
// (Detail the blob digest, Current and Total its bytes) and "exists" (a
// blob the registry had); calls come from one goroutine at a time.
func (s *Store) Push(ctx context.Context, ref, dest string, opts PushOptions, progress func(Progress)) (digest string, err error) {
	img, err := s.Get(ref)
	if err != nil {
		return "", fmt.Errorf("push image: %w", err)
	}
	if dest = cmp.Or(dest, img.Name); dest == "" {
		return "", errdefs.New(errdefs.InvalidArgument, "push image %s: the image is untagged: give a destination", ref)
	}
	r, err := parseReference(dest, opts.Insecure)
	if err != nil {
		return "", fmt.Errorf("push image %s: %w", ref, err)
	}
	pins := &pinSet{s: s}
	defer pins.release()
	pins.add(imageContent(img)...)
	si, err := s.v1Image(img, syncProgress(progress))
	if err != nil {
		return "", fmt.Errorf("push image %s: %w", ref, err)
	}
	withCreds := opts.Username != "" || opts.Password != ""
	pusher, err := remote.NewPusher(remote.WithAuth(authenticator(opts.Username, opts.Password)), remote.WithJobs(pullJobs))
	if err != nil {
		return "", fmt.Errorf("push image %s: %w", ref, err)
	}
	if err := pusher.Push(ctx, r, si); err != nil {
		return "", fmt.Errorf("push image %s to %s: %w", ref, dest, registryError(err, r.Context(), withCreds))
	}
	si.reportSkipped()
	s.log.Info("pushed image", "ref", ref, "dest", dest, "digest", img.Digest)
	return img.Digest, nil
}

// imageContent lists the layers and blobs of img, for pinning.
func imageContent(img *Image) []string {
	keys := append([]string{img.ID}, img.Layers...)
	if img.Digest != "" {
		keys = append(keys, img.Digest)
	}
	for _, b := range img.Blobs {
		keys = append(keys, b.Digest)
	}
	return keys
}

// storeImage is a stored image as a go-containerregistry v1.Image, backed
// by the store's blobs: its manifest, config and compressed layers are the
// stored bytes.
type storeImage struct {
	v1.Image
	core *storeImageCore
}

// v1Image returns img as a v1.Image. It fails with FailedPrecondition when
// img has no blobs (recorded by an older den). progress gets "uploading"
// as layer blobs are read, for Push.
func (s *Store) v1Image(img *Image, progress func(Progress)) (*storeImage, error) {
	if img.Digest == "" || len(img.Blobs) != len(img.Layers) {
		return nil, errdefs.New(errdefs.FailedPrecondition,
			"image %s was recorded without its layer blobs (by an older den, or built on such an image): re-import or rebuild it", img.Name)
	}
	manifest, err := s.readBlob(img.Digest)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	config, err := s.readBlob(img.ID)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(manifest))
	if err != nil {
		return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "parse manifest %s", img.Digest)
	}
	mt := m.MediaType
	if mt == "" {
		mt = types.OCIManifestSchema1
	}
	core := &storeImageCore{s: s, manifest: manifest, config: config, mediaType: mt, blobs: map[string]Layer{},
		progress: progress, read: map[string]bool{}}
	for _, b := range img.Blobs {
		core.blobs[b.Digest] = b
	}
	vi, err := partial.CompressedToImage(core)
	if err != nil {
		return nil, err
	}
	return &storeImage{Image: vi, core: core}, nil
}

// reportSkipped reports "exists" for the layer blobs the registry had.
func (i *storeImage) reportSkipped() {
	i.core.mu.Lock()
	defer i.core.mu.Unlock()
	for d, b := range i.core.blobs {
		if !i.core.read[d] {
			i.core.progress(Progress{Phase: "exists", Current: b.Size, Total: b.Size, Detail: d})
		}
	}
}

// storeImageCore implements partial.CompressedImageCore over the store.
type storeImageCore struct {
	s                *Store
	manifest, config []byte
	mediaType        types.MediaType
	blobs            map[string]Layer // layer blobs by digest
	progress         func(Progress)

	mu   sync.Mutex
	read map[string]bool // layer blobs opened
}

func (c *storeImageCore) RawConfigFile() ([]byte, error)      { return c.config, nil }
func (c *storeImageCore) MediaType() (types.MediaType, error) { return c.mediaType, nil }
func (c *storeImageCore) RawManifest() ([]byte, error)        { return c.manifest, nil }

// LayerByDigest returns the stored layer blob h.
func (c *storeImageCore) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	b, ok := c.blobs[h.String()]
	if !ok {
		return nil, errdefs.New(errdefs.NotFound, "image has no layer blob %s", h)
	}
	return &storeBlob{core: c, b: b}, nil
}

// storeBlob is a stored layer blob as a partial.CompressedLayer.
type storeBlob struct {
	core *storeImageCore
	b    Layer
}

func (l *storeBlob) Digest() (v1.Hash, error)            { return v1.NewHash(l.b.Digest) }
func (l *storeBlob) Size() (int64, error)                { return l.b.Size, nil }
func (l *storeBlob) MediaType() (types.MediaType, error) { return types.MediaType(l.b.MediaType), nil }

// Compressed opens the blob file; reading it reports "uploading" progress.
func (l *storeBlob) Compressed() (io.ReadCloser, error) {
	f, err := os.Open(l.core.s.blobPath(l.b.Digest))
	if err != nil {
		return nil, fmt.Errorf("open layer blob %s: %w", l.b.Digest, err)
	}
	l.core.mu.Lock()
	l.core.read[l.b.Digest] = true
	l.core.mu.Unlock()
	m := &meter{progress: l.core.progress, phase: "uploading", detail: l.b.Digest, total: l.b.Size}
	m.start(0)
	return &stackedCloser{Reader: &meteredReader{r: f, m: m}, closers: []io.Closer{f, closerFunc(m.done)}}, nil
}

type closerFunc func()

func (f closerFunc) Close() error {
	f()
	return nil
}
