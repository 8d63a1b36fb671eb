package image_test

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/testenv"
)

// BenchmarkPullLarge pulls an image with one layer of incompressible data
// from a registry that keeps its blobs on disk, and reports the peak Go heap
// during the pull: it should not grow with the layer size (the layer is
// streamed to disk and unpacked from there, never held in memory).
//
//	go test -run '^$' -bench PullLarge -benchtime 1x ./internal/image/
func BenchmarkPullLarge(b *testing.B) {
	for _, mib := range []int{16, 128} {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			testenv.RequireRoot(b)
			host := testenv.Registry(b, testenv.RegistryOptions{BlobDir: b.TempDir()})
			ref := host + "/large:1"
			seed(b, ref, imageOf(b, largeLayer(b, mib<<20)))
			b.SetBytes(int64(mib) << 20)
			var peak uint64
			for b.Loop() {
				s, err := image.Open(b.TempDir(), nil)
				if err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				stop := watchHeap(&peak)
				_, err = s.Pull(context.Background(), ref, image.PullOptions{}, nil)
				stop()
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		})
	}
}

// largeLayer writes a layer of one file of size random bytes to a
// temporary file and returns it as a layer read from that file.
func largeLayer(b *testing.B, size int) v1.Layer {
	b.Helper()
	p := filepath.Join(b.TempDir(), "layer.tar")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	tw := tar.NewWriter(f)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "large", Mode: 0o644, Size: int64(size)}); err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(tw, rand.New(rand.NewSource(1)), int64(size)); err != nil {
		b.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	l, err := tarball.LayerFromFile(p)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// watchHeap samples the heap in use until stop is called, keeping the
// largest value seen in peak.
func watchHeap(peak *uint64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			*peak = max(*peak, ms.HeapInuse)
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}
