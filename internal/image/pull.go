package image

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"

	"github.com/denhq/den/internal/errdefs"
)

// pullJobs is how many layers a pull downloads and unpacks at once.
const pullJobs = 3

// PullOptions configures Pull. The zero value pulls anonymously over HTTPS
// (plain HTTP for localhost and private addresses, as docker does) for
// linux on this machine's architecture.
type PullOptions struct {
	// Insecure allows plain HTTP to the registry.
	Insecure bool
	// Username and Password are basic-auth credentials, also used with the
	// registry's token service when it asks for a bearer token.
	Username, Password string
	// Platform is the "os/arch[/variant]" to pick from a multi-platform
	// image; default linux/<this machine's architecture>.
	Platform string
}

// Pull downloads the image ref ("alpine", "127.0.0.1:5000/team/app:v1",
// "registry/repo@sha256:...") from its registry and records it under its
// normalised name ("docker.io/library/alpine:latest"); Get also finds it by
// the short name. A multi-platform image is resolved to opts.Platform.
//
// A layer whose blob is already stored is not downloaded again; one that is
// unpacked already but lacks the registry's blob (imported from an archive)
// has its blob downloaded and checked, not unpacked again. Blobs are
// streamed to partial/<digest> while hashed, checked against their digest,
// and only then moved into the store; a pull that is cancelled or killed
// leaves the partial download, which a later pull resumes with an HTTP
// range request when the registry allows it. A blob that does not match its
// digest fails the pull with InvalidArgument naming it; nothing is recorded
// and the bad download is discarded. Blobs completed before a failure stay
// (unreferenced, until Prune) for the next pull. A dropped connection is
// resumed at once, as long as each attempt gets further. Registry refusals
// are Unauthenticated (401), PermissionDenied (403) or NotFound; an
// unreachable registry, or one that keeps dropping the connection, is
// Unavailable.
//
// progress, which may be nil, gets the phases "resolving", "downloading"
// (Detail the layer digest, Current and Total its bytes), "exists" (a layer
// already stored) and "unpacking" (Detail the diff ID). Calls come from one
// goroutine at a time.
func (s *Store) Pull(ctx context.Context, ref string, opts PullOptions, progress func(Progress)) (*Image, error) {
	r, err := parseReference(ref, opts.Insecure)
	if err != nil {
		return nil, fmt.Errorf("pull image: %w", err)
	}
	platform, err := parsePlatform(opts.Platform)
	if err != nil {
		return nil, fmt.Errorf("pull image %s: %w", ref, err)
	}
	p := &puller{
		s: s, ref: r, platform: platform, progress: syncProgress(progress),
		auth: authenticator(opts.Username, opts.Password), withCreds: opts.Username != "" || opts.Password != "",
	}
	img, err := p.run(ctx)
	if err != nil {
		return nil, fmt.Errorf("pull image %s: %w", ref, registryError(err, r.Context(), p.withCreds))
	}
	return img, nil
}

func parsePlatform(s string) (v1.Platform, error) {
	if s == "" {
		return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}, nil
	}
	p, err := v1.ParsePlatform(s)
	if err != nil || p.OS == "" || p.Architecture == "" {
		return v1.Platform{}, errdefs.New(errdefs.InvalidArgument, "invalid platform %q: want os/arch[/variant]", s)
	}
	return *p, nil
}

// puller is one pull in progress.
type puller struct {
	s         *Store
	ref       name.Reference
	platform  v1.Platform
	auth      authn.Authenticator
	withCreds bool
	progress  func(Progress)

	// Set by resolve.
	client      *http.Client // authenticated for pulls from ref's repository
	rawManifest []byte
	manifest    *v1.Manifest
	rawConfig   []byte
	config      *v1.ConfigFile
}

// run pulls and records the image.
func (p *puller) run(ctx context.Context) (*Image, error) {
	p.progress(Progress{Phase: "resolving", Detail: referenceName(p.ref)})
	if err := p.resolve(ctx); err != nil {
		return nil, err
	}
	img := &Image{
		Name: referenceName(p.ref), ID: p.manifest.Config.Digest.String(),
		Config: configOf(p.config.Config), History: historyOf(p.config.History),
	}
	for _, d := range p.config.RootFS.DiffIDs {
		img.Layers = append(img.Layers, d.String())
	}
	pins := &pinSet{s: p.s}
	defer pins.release()
	pins.add(img.Layers...)
	for _, l := range p.manifest.Layers {
		pins.add(l.Digest.String())
	}
	blobs, sizes, err := p.layers(ctx, img.Layers, pins)
	if err != nil {
		return nil, err
	}
	img.Blobs = blobs
	if err := p.s.storeMetadata(img, p.rawConfig, p.rawManifest, pins); err != nil {
		return nil, err
	}
	return p.s.record(img, sizes)
}

// resolve authenticates to the registry and fetches the manifest (of the
// platform's image, for an index) and the config.
func (p *puller) resolve(ctx context.Context) error {
	repo := p.ref.Context()
	tr, err := transport.NewWithContext(ctx, repo.Registry, p.auth, transport.NewRetry(remote.DefaultTransport),
		[]string{repo.Scope(transport.PullScope)})
	if err != nil {
		return err
	}
	p.client = &http.Client{Transport: tr}
	desc, err := remote.Get(p.ref, remote.WithTransport(tr), remote.WithContext(ctx), remote.WithPlatform(p.platform))
	if err != nil {
		return err
	}
	img, err := desc.Image()
	if err != nil {
		return err
	}
	if p.rawManifest, err = img.RawManifest(); err != nil {
		return err
	}
	if p.manifest, err = v1.ParseManifest(bytes.NewReader(p.rawManifest)); err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "parse manifest")
	}
	if p.rawConfig, err = img.RawConfigFile(); err != nil {
		return err
	}
	if p.config, err = v1.ParseConfigFile(bytes.NewReader(p.rawConfig)); err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "parse image config")
	}
	return p.check()
}

// check verifies what resolve fetched hangs together.
func (p *puller) check() error {
	if got := digestOf(p.rawConfig); got != p.manifest.Config.Digest.String() {
		return errdefs.New(errdefs.InvalidArgument, "image config is corrupt: manifest says %s, content has digest %s", p.manifest.Config.Digest, got)
	}
	if n, m := len(p.manifest.Layers), len(p.config.RootFS.DiffIDs); n != m {
		return errdefs.New(errdefs.InvalidArgument, "image has %d layers but its config lists %d diff IDs", n, m)
	}
	for _, l := range p.manifest.Layers {
		if !validDigest(l.Digest.String()) || l.Size < 0 {
			return errdefs.New(errdefs.InvalidArgument, "manifest lists an invalid layer %s of %d bytes", l.Digest, l.Size)
		}
		if !l.MediaType.IsDistributable() {
			return errdefs.New(errdefs.Unsupported, "layer %s is non-distributable (%s)", l.Digest, l.MediaType)
		}
	}
	return nil
}

// layers fetches and unpacks the layers, pullJobs at a time, and returns
// their blobs and unpacked sizes.
func (p *puller) layers(ctx context.Context, diffIDs []string, pins *pinSet) ([]Layer, map[string]int64, error) {
	blobs := make([]Layer, len(diffIDs))
	sizes := make([]int64, len(diffIDs))
	var mu sync.Mutex
	var bad []string
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(pullJobs)
	for i, desc := range p.manifest.Layers {
		blobs[i] = Layer{DiffID: diffIDs[i], Digest: desc.Digest.String(), Size: desc.Size, MediaType: string(desc.MediaType)}
		g.Go(func() error {
			var err error
			sizes[i], err = p.layer(gctx, blobs[i])
			if errdefs.Is(err, errdefs.InvalidArgument) {
				mu.Lock()
				bad = append(bad, blobs[i].Digest)
				mu.Unlock()
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		for _, b := range bad {
			pins.drop(b)
		}
		return nil, nil, err
	}
	out := map[string]int64{}
	for i, d := range diffIDs {
		out[d] = sizes[i]
	}
	return blobs, out, nil
}

// layer makes sure the blob b is stored and its layer unpacked, and returns
// the layer's unpacked size.
func (p *puller) layer(ctx context.Context, b Layer) (int64, error) {
	if size, ok := p.s.verifiedLayer(b); ok {
		p.progress(Progress{Phase: "exists", Current: b.Size, Total: b.Size, Detail: b.Digest})
		return size, nil
	}
	if p.s.hasBlob(b.Digest) {
		p.progress(Progress{Phase: "exists", Current: b.Size, Total: b.Size, Detail: b.Digest})
	} else if err := p.download(ctx, b); err != nil {
		return 0, err
	}
	if _, err := os.Stat(p.s.layerDir(b.DiffID)); err == nil {
		// Unpacked already from another blob: check this one matches.
		return p.s.unpackBlob(ctx, b, nil)
	}
	return p.s.unpackBlob(ctx, b, p.progress)
}
