package server

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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
