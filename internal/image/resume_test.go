package image_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/testenv"
)

// faults is a switchable BlobFault for one digest, with a log of the Range
// headers the registry saw for it.
type faults struct {
	digest string

	mu     sync.Mutex
	fault  testenv.BlobFault
	ranges []string
}

func (f *faults) blob(r testenv.BlobRequest) testenv.BlobFault {
	if r.Digest != f.digest {
		return testenv.BlobFault{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ranges = append(f.ranges, r.Range)
	return f.fault
}

func (f *faults) set(fault testenv.BlobFault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fault, f.ranges = fault, nil
}

func (f *faults) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ranges...)
}

func partialSize(t *testing.T, dir, digest string) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, "partial", strings.TrimPrefix(digest, "sha256:")))
	if err != nil {
		t.Fatalf("no partial download of %s: %v", digest, err)
	}
	return fi.Size()
}

// waitServed waits until the registry has reported a download of digest.
func waitServed(t *testing.T, l *servedLog, digest string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		l.mu.Lock()
		n := l.n[digest]
		l.mu.Unlock()
		if n > 0 {
			return
		}
	}
	t.Fatalf("the registry never reported the download of %s", digest)
}

func TestPullResumesAfterCancel(t *testing.T) {
	l, blob := randomLayer(t, 4<<20)
	src := imageOf(t, l)
	digest := layerDigests(t, src)[0]
	var log servedLog
	host := testenv.Registry(t, testenv.RegistryOptions{Served: log.served})
	ref := host + "/big:1"
	seed(t, ref, src)
	s, dir := openStoreDir(t)

	// The first pull is cancelled a megabyte into the layer, as a killed
	// process would stop.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := s.Pull(ctx, ref, image.PullOptions{}, func(p image.Progress) {
		if p.Phase == "downloading" && p.Current >= 1<<20 {
			cancel()
		}
	})
	if !errdefs.Is(err, errdefs.Canceled) {
		t.Fatalf("cancelled Pull = %v, want canceled", err)
	}
	have := partialSize(t, dir, digest)
	if have <= 0 || have >= int64(len(blob)) {
		t.Fatalf("partial download holds %d of %d bytes", have, len(blob))
	}
	if names := dirNames(t, filepath.Join(dir, "blobs", "sha256")); len(names) != 0 {
		t.Errorf("blobs/ = %v after a cancelled pull, want nothing (a partial blob is never visible)", names)
	}
	// The cancelled request's handler may still be writing: count the
	// resumed pull's bytes alone.
	waitServed(t, &log, digest)
	log.take()

	// Reopening keeps the partial download; the next pull resumes it.
	s2, err := image.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := partialSize(t, dir, digest); got != have {
		t.Fatalf("Open changed the partial download from %d to %d bytes", have, got)
	}
	img, err := s2.Pull(context.Background(), ref, image.PullOptions{}, nil)
	if err != nil {
		t.Fatalf("resumed Pull: %v", err)
	}
	if got, want := log.take()[digest], int64(len(blob))-have; got != want {
		t.Errorf("resumed pull fetched %d bytes of the layer, want the missing %d", got, want)
	}
	checkPulled(t, s2, img, src, ref)
	if names := dirNames(t, filepath.Join(dir, "partial")); len(names) != 0 {
		t.Errorf("partial/ = %v after the pull completed, want empty", names)
	}
}

func TestPullRecoversFromDroppedConnections(t *testing.T) {
	l, blob := randomLayer(t, 1<<20)
	src := imageOf(t, l)
	f := &faults{digest: layerDigests(t, src)[0]}
	var log servedLog
	host := testenv.Registry(t, testenv.RegistryOptions{Blob: f.blob, Served: log.served})
	ref := host + "/flaky:1"
	seed(t, ref, src)
	const cut = 300 << 10

	// Every request is cut after 300 KiB, but each resumes where the last
	// one stopped: the pull gets there.
	f.set(testenv.BlobFault{DropAfter: cut})
	s := openStore(t)
	img, err := s.Pull(context.Background(), ref, image.PullOptions{}, nil)
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	checkPulled(t, s, img, src, ref)
	if got := fileIn(t, s, ref, "random"); got != string(randomBody(1<<20)) {
		t.Errorf("random file differs from the source (%d bytes)", len(got))
	}
	want := []string{""}
	for off := cut; off < len(blob); off += cut {
		want = append(want, fmt.Sprintf("bytes=%d-%d", off, len(blob)-1))
	}
	if diff := cmp.Diff(want, f.seen()); diff != "" {
		t.Errorf("Range headers of the layer's requests (-want +got):\n%s", diff)
	}
	if got := log.take()[f.digest]; got != int64(len(blob)) {
		t.Errorf("served %d bytes of the layer, want %d (each byte once)", got, len(blob))
	}

	// A registry that ignores ranges and drops every connection at the same
	// point makes no progress: the pull gives up.
	f.set(testenv.BlobFault{DropAfter: cut, IgnoreRange: true})
	s, dir := openStoreDir(t)
	_, err = s.Pull(context.Background(), ref, image.PullOptions{}, nil)
	prefix := "pull image " + ref + ": connection to registry " + host + " dropped: "
	if err == nil || !strings.HasPrefix(err.Error(), prefix) || !errdefs.Is(err, errdefs.Unavailable) {
		t.Fatalf("Pull = %v (%v), want %s… (unavailable)", err, errdefs.KindOf(err), prefix)
	}
	if got := partialSize(t, dir, f.digest); got != cut {
		t.Errorf("partial download holds %d bytes, want %d", got, cut)
	}
	// Once the connection holds, the ignored range costs a full download.
	f.set(testenv.BlobFault{IgnoreRange: true})
	log.take()
	if img, err = s.Pull(context.Background(), ref, image.PullOptions{}, nil); err != nil {
		t.Fatalf("Pull: %v", err)
	}
	checkPulled(t, s, img, src, ref)
	if diff := cmp.Diff([]string{fmt.Sprintf("bytes=%d-%d", cut, len(blob)-1)}, f.seen()); diff != "" {
		t.Errorf("Range headers (-want +got):\n%s", diff)
	}
	if got := log.take()[f.digest]; got != int64(len(blob)) {
		t.Errorf("served %d bytes of the layer, want %d", got, len(blob))
	}
}

func TestOpenAfterCrashMidPull(t *testing.T) {
	l, blob := randomLayer(t, 256<<10)
	src := imageOf(t, l)
	digest := layerDigests(t, src)[0]
	var log servedLog
	host := testenv.Registry(t, testenv.RegistryOptions{Served: log.served})
	ref := host + "/crash:1"
	seed(t, ref, src)
	_, dir := openStoreDir(t)
	// What a crash mid-pull leaves: a partial download whose tail was torn
	// (a byte the disk never got), and a half-written temporary file.
	torn := append([]byte(nil), blob[:len(blob)/2]...)
	torn[len(torn)-1] ^= 0xff
	hexd := strings.TrimPrefix(digest, "sha256:")
	if err := os.WriteFile(filepath.Join(dir, "partial", hexd), torn, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tmp", "blob-123"), blob[:100], 0o644); err != nil {
		t.Fatal(err)
	}
	s2, err := image.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, filepath.Join(dir, "blobs", "sha256")); len(names) != 0 {
		t.Errorf("blobs/ = %v after Open, want nothing", names)
	}
	if names := dirNames(t, filepath.Join(dir, "tmp")); len(names) != 0 {
		t.Errorf("tmp/ = %v after Open, want empty", names)
	}
	if _, err := s2.Get(ref); !errdefs.IsNotFound(err) {
		t.Errorf("Get after the crash = %v, want not found", err)
	}
	// The pull resumes the torn partial, finds the digest wrong, and starts
	// over from scratch.
	img, err := s2.Pull(context.Background(), ref, image.PullOptions{}, nil)
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	checkPulled(t, s2, img, src, ref)
	if got, want := log.take()[digest], int64(len(blob)-len(torn)+len(blob)); got != want {
		t.Errorf("served %d bytes of the layer, want %d (the rest, then all of it)", got, want)
	}
}

func TestPullReusesBlobLeftByCrash(t *testing.T) {
	l, blob := randomLayer(t, 64<<10)
	src := imageOf(t, l)
	digest := layerDigests(t, src)[0]
	var log servedLog
	host := testenv.Registry(t, testenv.RegistryOptions{Served: log.served})
	ref := host + "/left:1"
	seed(t, ref, src)
	_, dir := openStoreDir(t)
	// A pull killed after a blob was complete and published, before the
	// image was recorded: Open moves the unreferenced blob to partial/.
	must(t, os.WriteFile(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:")), blob, 0o644))
	s, err := image.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, filepath.Join(dir, "blobs", "sha256")); len(names) != 0 {
		t.Errorf("blobs/ = %v after Open, want the unreferenced blob moved out", names)
	}
	img, err := s.Pull(context.Background(), ref, image.PullOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkPulled(t, s, img, src, ref)
	if n, ok := log.take()[digest]; ok {
		t.Errorf("the layer was downloaded again (%d bytes), want it taken from partial/ after a check", n)
	}
}

func TestConcurrentPullsDownloadOnce(t *testing.T) {
	l, blob := randomLayer(t, 512<<10)
	src := imageOf(t, l, layerOf(t, reg("small", "s")))
	var log servedLog
	host := testenv.Registry(t, testenv.RegistryOptions{Served: log.served})
	ref := host + "/same:1"
	seed(t, ref, src)
	s, dir := openStoreDir(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { _, errs[i] = s.Pull(context.Background(), ref, image.PullOptions{}, nil) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Pull: %v", err)
		}
	}
	if got := log.take()[layerDigests(t, src)[0]]; got != int64(len(blob)) {
		t.Errorf("served %d bytes of the layer to 4 concurrent pulls, want %d (one download)", got, len(blob))
	}
	for _, sub := range []string{"partial", "tmp"} {
		if names := dirNames(t, filepath.Join(dir, sub)); len(names) != 0 {
			t.Errorf("%s/ = %v, want empty", sub, names)
		}
	}
}
