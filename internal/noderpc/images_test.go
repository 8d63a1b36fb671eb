package noderpc

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/nodelink/linktest"
)

func TestPullThroughConcurrent(t *testing.T) {
	ctx := context.Background()
	serverImages, err := image.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "hello.txt"), []byte("from the server\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want, err := serverImages.ImportDir(ctx, root, "tiny:1", image.Config{})
	if err != nil {
		t.Fatal(err)
	}
	serverMux := nodelink.NewMux()
	ServeImages(serverMux, serverImages)
	_, agentEnd := linktest.Connect(t, serverMux, nodelink.NewMux(), "n1")
	link := &Link{}
	link.Set(agentEnd)
	agentImages, err := image.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &PullThrough{Local: agentImages, Link: link}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rf, err := p.Rootfs("tiny:1")
			if err == nil {
				_, err = os.Stat(filepath.Join(rf.Layers[0], "hello.txt"))
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Rootfs %d: %v", i, err)
		}
	}
	got, err := agentImages.Get("tiny:1")
	if err != nil || got.ID != want.ID {
		t.Fatalf("agent has %+v %v, want image %s", got, err, want.ID)
	}
	if _, err := p.Rootfs("missing:1"); !errdefs.IsNotFound(err) {
		t.Fatalf("an image the server lacks: %v, want NotFound", err)
	}
}
