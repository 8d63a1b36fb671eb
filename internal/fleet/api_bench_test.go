package fleet

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/server"
	"github.com/denhq/den/internal/store"
	den "github.com/denhq/den/sdk/go"
)

// BenchmarkAPILifecycle is BenchmarkLifecycle through the /v1 API of a
// server whose node is the fleet (one server, one raft voter, in one
// process): the server's own cost on top of the fleet's.
func BenchmarkAPILifecycle(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Dir: b.TempDir(), NodeID: "s1"})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	images, err := image.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	root := b.TempDir()
	os.WriteFile(filepath.Join(root, "README"), []byte("sim\n"), 0o644)
	if _, err := images.ImportDir(ctx, root, "sim:1", image.Config{}); err != nil {
		b.Fatal(err)
	}
	e := simFleet(b, st, 50)
	srv, err := server.New(server.Config{Store: st, Node: e.fleet, Images: images})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	secret, hash, err := server.NewAPIKey()
	if err != nil {
		b.Fatal(err)
	}
	if err := st.PutAPIKey(ctx, &store.APIKey{ID: "k", Tenant: "t", Hash: hash, Admin: true}); err != nil {
		b.Fatal(err)
	}
	c, err := den.NewClient(den.WithURL(hs.URL), den.WithAPIKey(secret),
		den.WithHTTPClient(&http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}}))
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]string, b.N)
	var failed atomic.Int64
	var firstErr atomic.Value
	run := func(name string, fn func(i int) error) {
		start := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 256 {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= b.N {
						return
					}
					if err := fn(i); err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
				}
			})
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), name+"/s")
	}
	b.ResetTimer()
	run("create", func(i int) error {
		sb, err := c.Create(ctx, rest.CreateSandboxRequest{Image: "sim:1", Runtime: "sim", CPUs: 0.1, MemoryMB: 128})
		if err == nil {
			ids[i] = sb.ID
		}
		return err
	})
	run("exec", func(i int) error {
		res, err := c.Sandbox(ids[i]).Run(ctx, "echo ok")
		if err == nil && string(res.Stdout) != "ok\n" {
			err = fmt.Errorf("stdout %q", res.Stdout)
		}
		return err
	})
	run("delete", func(i int) error { return c.Delete(ctx, ids[i]) })
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d operations failed; the first: %v", f, firstErr.Load())
	}
}
