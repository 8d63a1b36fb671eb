package server

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPortConnLimit: with MaxPortConns 3, a burst of 40 concurrent
// requests to a port all complete, and the server in the sandbox never
// handles more than 3 of them at once.
func TestPortConnLimit(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(c *Config) { c.MaxPortConns = 3 })
	sb := e.create(e.keyA, `{"image":"busybox"}`)
	// Requests being handled at once: each holds its tunnel until its
	// answer is written. The pause lets requests pile up.
	var inflight, peak atomic.Int32
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		inflight.Add(-1)
		fmt.Fprint(w, "ok")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	proxy := httptest.NewServer(e.srv.PortProxy(sb.ID, ln.Addr().(*net.TCPAddr).Port))
	t.Cleanup(proxy.Close)

	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(proxy.URL + "/")
			if err != nil {
				failed.Add(1)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "ok" {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of 40 requests failed", failed.Load())
	}
	if p := peak.Load(); p > 3 || p < 1 {
		t.Fatalf("the sandbox's server handled %d requests at once, want 1 to 3", p)
	}
}
