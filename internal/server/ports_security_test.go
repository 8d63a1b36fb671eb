package server

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/denhq/den/api/rest"
)

// TestPortProxyHugeResponseHeaders has a server in the sandbox answer
// with 2 MiB of headers: the port proxy stops reading at 1 MiB and
// answers 502 naming the limit, and headers under the limit still pass.
func TestPortProxyHugeResponseHeaders(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"image":"busybox"}`)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 2 << 20
		if r.URL.Path == "/small" {
			n = 512 << 10
		}
		w.Header().Set("X-Big", strings.Repeat("a", n))
		io.WriteString(w, "body")
	})}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	port := ln.Addr().(*net.TCPAddr).Port

	w := httptest.NewRecorder()
	e.srv.PortProxy(sb.ID, port).ServeHTTP(w, httptest.NewRequest("GET", "/big", nil))
	checkAPIError(t, w.Code, w.Body.Bytes(), http.StatusBadGateway, rest.Error{Code: "unavailable",
		Message: fmt.Sprintf("the server on port %d in sandbox %s answered with more than 1048576 bytes of headers", port, sb.ID)})
	w = httptest.NewRecorder()
	e.srv.PortProxy(sb.ID, port).ServeHTTP(w, httptest.NewRequest("GET", "/small", nil))
	if w.Code != 200 || w.Body.String() != "body" || len(w.Header().Get("X-Big")) != 512<<10 {
		t.Errorf("512 KiB of response headers: %d %.100s", w.Code, w.Body.String())
	}
}

// TestGuestProxyHugeResponseHeaders puts, in place of a sandbox's guest
// agent, a server that answers with 2 MiB of headers: the envd proxy
// stops reading at 1 MiB and answers an error instead of passing them on.
func TestGuestProxyHugeResponseHeaders(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"image":"busybox"}`)
	sock := filepath.Join(t.TempDir(), "g.sock")
	if len(sock) > 100 {
		dir, err := os.MkdirTemp("", "den-sec-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		sock = filepath.Join(dir, "g.sock")
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", strings.Repeat("a", 2<<20))
		w.WriteHeader(http.StatusNoContent)
	})}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	e.node.setSock(sock)

	req, _ := http.NewRequest("GET", e.url+"/v1/sandboxes/"+sb.ID+"/envd/health", nil)
	req.Header.Set("X-API-Key", e.keyA)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Big") != "" ||
		!strings.Contains(string(body), "server response headers exceeded 1048576 bytes") {
		t.Errorf("2 MiB of headers from the guest: %d, X-Big of %d bytes, %.300s; want 503 naming the limit",
			resp.StatusCode, len(resp.Header.Get("X-Big")), body)
	}
}
