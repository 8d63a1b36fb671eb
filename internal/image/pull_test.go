package image_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/testenv"
)

// seed pushes img to the registry reference ref with go-containerregistry.
func seed(t testing.TB, ref string, img v1.Image, opts ...remote.Option) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, opts...); err != nil {
		t.Fatalf("seed %s: %v", ref, err)
	}
}

// layerDigests lists the compressed digests of img's layers.
func layerDigests(t *testing.T, img v1.Image) []string {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range m.Layers {
		out = append(out, l.Digest.String())
	}
	return out
}

func manifestDigest(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// checkBlobs checks img's blobs are aligned with its layers.
func checkBlobs(t *testing.T, img *image.Image) {
	t.Helper()
	if len(img.Blobs) != len(img.Layers) {
		t.Fatalf("image has %d blobs for %d layers", len(img.Blobs), len(img.Layers))
	}
	for i, b := range img.Blobs {
		if b.DiffID != img.Layers[i] || !strings.HasPrefix(b.Digest, "sha256:") || b.Size <= 0 || b.MediaType == "" {
			t.Errorf("blob %d = %+v, want the blob of %s", i, b, img.Layers[i])
		}
	}
	if !strings.HasPrefix(img.Digest, "sha256:") {
		t.Errorf("Digest = %q, want a manifest digest", img.Digest)
	}
}

// checkPulled checks that got is src, pulled and recorded as name.
func checkPulled(t *testing.T, s *image.Store, got *image.Image, src v1.Image, name string) {
	t.Helper()
	want := &image.Image{Name: name, ID: configName(t, src), Layers: diffIDs(t, src), Digest: manifestDigest(t, src)}
	opt := cmp.FilterPath(func(p cmp.Path) bool {
		f := p.Last().String()
		return f == ".Size" || f == ".CreatedAt" || f == ".Blobs" || f == ".History" || f == ".Config"
	}, cmp.Ignore())
	if diff := cmp.Diff(want, got, opt); diff != "" {
		t.Errorf("pulled image (-want +got):\n%s", diff)
	}
	checkBlobs(t, got)
	var blobDigests []string
	for _, b := range got.Blobs {
		blobDigests = append(blobDigests, b.Digest)
	}
	if diff := cmp.Diff(layerDigests(t, src), blobDigests); diff != "" {
		t.Errorf("blob digests (-want +got):\n%s", diff)
	}
	if again, err := s.Get(name); err != nil || again.ID != got.ID {
		t.Errorf("Get(%s) = %v, %v", name, again, err)
	}
}

// fileIn returns the content of rel in the merged view of image ref's layers.
func fileIn(t *testing.T, s *image.Store, ref, rel string) string {
	t.Helper()
	rootfs, err := s.Rootfs(ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range rootfs.Layers {
		if b, err := os.ReadFile(filepath.Join(l, rel)); err == nil {
			return string(b)
		}
	}
	return ""
}

func TestPullAuth(t *testing.T) {
	src := imageOf(t, layerOf(t, reg("hello", "world")), layerOf(t, reg("second", "2")))
	tests := []struct {
		name     string
		registry testenv.RegistryOptions
		opts     image.PullOptions
		kind     errdefs.Kind
		want     string // error message prefix, with HOST for the registry
	}{
		{"anonymous", testenv.RegistryOptions{}, image.PullOptions{}, 0, ""},
		{"basic", testenv.RegistryOptions{Username: "u", Password: "p"}, image.PullOptions{Username: "u", Password: "p"}, 0, ""},
		{"token", testenv.RegistryOptions{Token: true, Username: "u", Password: "p"}, image.PullOptions{Username: "u", Password: "p"}, 0, ""},
		{"anonymous token", testenv.RegistryOptions{Token: true}, image.PullOptions{}, 0, ""},
		{"insecure flag", testenv.RegistryOptions{}, image.PullOptions{Insecure: true}, 0, ""},
		{"basic wrong password", testenv.RegistryOptions{Username: "u", Password: "p"}, image.PullOptions{Username: "u", Password: "bad"},
			errdefs.Unauthenticated, "pull image HOST/team/app:v1: registry HOST rejected the credentials: "},
		{"basic without credentials", testenv.RegistryOptions{Username: "u", Password: "p"}, image.PullOptions{},
			errdefs.Unauthenticated, "pull image HOST/team/app:v1: registry HOST requires credentials: "},
		{"token wrong password", testenv.RegistryOptions{Token: true, Username: "u", Password: "p"}, image.PullOptions{Username: "u", Password: "bad"},
			errdefs.Unauthenticated, "pull image HOST/team/app:v1: registry HOST rejected the credentials: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			host := testenv.Registry(t, tt.registry)
			ref := host + "/team/app:v1"
			seed(t, ref, src, remote.WithAuth(&authn.Basic{Username: "u", Password: "p"}))
			img, err := s.Pull(context.Background(), ref, tt.opts, nil)
			if tt.want != "" {
				want := strings.ReplaceAll(tt.want, "HOST", host)
				t.Logf("error: %v", err)
				if err == nil || !strings.HasPrefix(err.Error(), want) || errdefs.KindOf(err) != tt.kind {
					t.Fatalf("Pull error = %v (%v), want %s… (%v)", err, errdefs.KindOf(err), want, tt.kind)
				}
				if list, _ := s.List(); len(list) != 0 {
					t.Errorf("List = %v after a failed pull, want empty", list)
				}
				return
			}
			if err != nil {
				t.Fatalf("Pull: %v", err)
			}
			checkPulled(t, s, img, src, ref)
			if got := fileIn(t, s, ref, "hello"); got != "world" {
				t.Errorf("hello = %q, want world", got)
			}
			want := image.Config{Env: []string{"PATH=/bin", "A=b"}, WorkingDir: "/work", User: "1000", Cmd: []string{"sh"}}
			if diff := cmp.Diff(want, img.Config); diff != "" {
				t.Errorf("Config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPullErrors(t *testing.T) {
	s := openStore(t)
	host := testenv.Registry(t, testenv.RegistryOptions{})
	tests := []struct {
		ref  string
		opts image.PullOptions
		kind errdefs.Kind
		want string
	}{
		{host + "/team/missing:v1", image.PullOptions{}, errdefs.NotFound, "pull image " + host + "/team/missing:v1: not found in registry " + host + ": "},
		{"UPPER/case", image.PullOptions{}, errdefs.InvalidArgument, `pull image: invalid image reference "UPPER/case": `},
		{host + "/team/app:v1", image.PullOptions{Platform: "linux"}, errdefs.InvalidArgument,
			"pull image " + host + `/team/app:v1: invalid platform "linux": want os/arch[/variant]`},
		{"127.0.0.1:1/team/app:v1", image.PullOptions{}, errdefs.Unavailable, "pull image 127.0.0.1:1/team/app:v1: cannot reach registry 127.0.0.1:1: "},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			_, err := s.Pull(context.Background(), tt.ref, tt.opts, nil)
			t.Logf("error: %v", err)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) || errdefs.KindOf(err) != tt.kind {
				t.Errorf("Pull error = %v (%v), want %s… (%v)", err, errdefs.KindOf(err), tt.want, tt.kind)
			}
		})
	}
}

func TestPullMultiPlatform(t *testing.T) {
	amd64 := imageOf(t, layerOf(t, reg("arch", "amd64")))
	arm64 := imageOf(t, layerOf(t, reg("arch", "arm64")))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
		mutate.IndexAddendum{Add: amd64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	host := testenv.Registry(t, testenv.RegistryOptions{})
	ref := host + "/multi:1"
	r, _ := name.ParseReference(ref)
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	native := map[string]v1.Image{"amd64": amd64, "arm64": arm64}[runtime.GOARCH]
	tests := []struct {
		platform string
		want     v1.Image
		content  string
	}{
		{"linux/amd64", amd64, "amd64"},
		{"linux/arm64/v8", arm64, "arm64"},
		{"", native, runtime.GOARCH},
	}
	for _, tt := range tests {
		t.Run(tt.platform, func(t *testing.T) {
			if tt.want == nil {
				t.Skipf("SKIP: no image in the test index for %s", runtime.GOARCH)
			}
			s := openStore(t)
			img, err := s.Pull(context.Background(), ref, image.PullOptions{Platform: tt.platform}, nil)
			if err != nil {
				t.Fatalf("Pull: %v", err)
			}
			checkPulled(t, s, img, tt.want, ref)
			if got := fileIn(t, s, ref, "arch"); got != tt.content {
				t.Errorf("arch = %q, want %q", got, tt.content)
			}
		})
	}
	_, err := openStore(t).Pull(context.Background(), ref, image.PullOptions{Platform: "linux/s390x"}, nil)
	if err == nil || !strings.Contains(err.Error(), "no child with platform linux/s390x") {
		t.Errorf("Pull of a missing platform = %v, want no child with platform linux/s390x", err)
	}
}

// servedLog records the body bytes a test registry sent per blob.
type servedLog struct {
	mu sync.Mutex
	n  map[string]int64
}

func (l *servedLog) served(digest string, n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == nil {
		l.n = map[string]int64{}
	}
	l.n[digest] += n
}

// take returns the bytes served per digest and starts over.
func (l *servedLog) take() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.n
	l.n = nil
	return n
}

func TestPullSharesLayersAndSkipsStoredOnes(t *testing.T) {
	shared := layerOf(t, reg("shared", strings.Repeat("s", 4096)))
	a := imageOf(t, shared, layerOf(t, reg("a", "a")))
	b := imageOf(t, shared, layerOf(t, reg("b", "b")))
	var log servedLog
	host := testenv.Registry(t, testenv.RegistryOptions{Served: log.served})
	seed(t, host+"/a:1", a)
	seed(t, host+"/b:1", b)
	s, dir := openStoreDir(t)
	if _, err := s.Pull(context.Background(), host+"/a:1", image.PullOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	log.take()
	var events []image.Progress
	if _, err := s.Pull(context.Background(), host+"/b:1", image.PullOptions{}, func(p image.Progress) { events = append(events, p) }); err != nil {
		t.Fatal(err)
	}
	sharedDigest := layerDigests(t, a)[0]
	if n, ok := log.take()[sharedDigest]; ok {
		t.Errorf("the shared layer was downloaded again (%d bytes)", n)
	}
	if !hasEvent(events, "exists", sharedDigest) || !hasEvent(events, "downloading", layerDigests(t, b)[1]) {
		t.Errorf("progress = %+v, want exists for the shared layer and downloading for b's own", events)
	}
	if names := dirNames(t, filepath.Join(dir, "layers")); len(names) != 3 {
		t.Errorf("layers/ = %v, want 3 layers (one shared)", names)
	}
	// A second pull of the same image downloads no layer.
	img, err := s.Pull(context.Background(), host+"/a:1", image.PullOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range layerDigests(t, a) {
		if n, ok := log.take()[d]; ok {
			t.Errorf("re-pull downloaded layer %s (%d bytes)", d, n)
		}
	}
	checkPulled(t, s, img, a, host+"/a:1")
}

func hasEvent(events []image.Progress, phase, detail string) bool {
	for _, e := range events {
		if e.Phase == phase && e.Detail == detail {
			return true
		}
	}
	return false
}

// randomLayer is a layer of one incompressible file "random" of size bytes
// (randomBody(size)); it also returns the layer's gzip blob.
func randomLayer(t *testing.T, size int) (v1.Layer, []byte) {
	t.Helper()
	l := layerOf(t, reg("random", string(randomBody(size))))
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	blob, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return l, blob
}

// randomBody is size pseudo-random bytes, the same for the same size.
func randomBody(size int) []byte {
	body := make([]byte, size)
	rand.New(rand.NewSource(int64(size))).Read(body)
	return body
}

func sha256Of(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestPullCorruptBlob(t *testing.T) {
	l, blob := randomLayer(t, 64<<10)
	src := imageOf(t, l)
	digest := layerDigests(t, src)[0]
	host := testenv.Registry(t, testenv.RegistryOptions{Blob: func(r testenv.BlobRequest) testenv.BlobFault {
		return testenv.BlobFault{Corrupt: r.Digest == digest}
	}})
	seed(t, host+"/bad:1", src)
	s, dir := openStoreDir(t)
	_, err := s.Pull(context.Background(), host+"/bad:1", image.PullOptions{}, nil)
	corrupt := bytes.Clone(blob)
	corrupt[len(corrupt)/2] ^= 0xff
	want := fmt.Sprintf("pull image %s/bad:1: blob %s is corrupt: its content has digest %s", host, digest, sha256Of(corrupt))
	if err == nil || err.Error() != want || !errdefs.Is(err, errdefs.InvalidArgument) {
		t.Fatalf("Pull error = %v (%v),\nwant %s (invalid_argument)", err, errdefs.KindOf(err), want)
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Errorf("List = %v after a corrupt pull, want empty", list)
	}
	for _, sub := range []string{"layers", "blobs/sha256", "partial", "tmp"} {
		if names := dirNames(t, filepath.Join(dir, sub)); len(names) != 0 {
			t.Errorf("%s/ = %v after a corrupt pull, want empty", sub, names)
		}
	}
}
