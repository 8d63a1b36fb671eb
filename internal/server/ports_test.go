package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/api/rest"
)

// sandboxServer is a server "in the sandbox" (the stub node's guest agent
// runs on the host, so its loopback is the test's): /echo describes the
// request it got, /events streams two server-sent events with a pause
// the test ends between them, and /ws upgrades to an echo of bytes.
func sandboxServer(t *testing.T, release <-chan struct{}) int {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s host=%s token=%q e2b-token=%q forwarded=%t body=%s",
			r.Method, r.URL.RequestURI(), r.Host, r.Header.Get("X-Access-Token"),
			r.Header.Get("E2b-Traffic-Access-Token"), r.Header.Get("X-Forwarded-For") != "", body)
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "data: two\n\n")
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want an upgrade", http.StatusBadRequest)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		brw.Flush()
		io.Copy(c, brw)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

func TestPortProxy(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"image":"busybox"}`)
	release := make(chan struct{})
	port := sandboxServer(t, release)
	proxy := httptest.NewServer(e.srv.PortProxy(sb.ID, port))
	t.Cleanup(proxy.Close)

	t.Run("request", func(t *testing.T) {
		req, _ := http.NewRequest("POST", proxy.URL+"/echo?q=1", strings.NewReader("hello"))
		req.Host = fmt.Sprintf("%d-%s.localhost", port, sb.ID)
		req.Header.Set("X-Access-Token", "secret")
		req.Header.Set("E2b-Traffic-Access-Token", "secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		want := fmt.Sprintf(`POST /echo?q=1 host=%s token="" e2b-token="" forwarded=true body=hello`, req.Host)
		if resp.StatusCode != 200 || string(got) != want {
			t.Errorf("got %d %q, want 200 %q", resp.StatusCode, got, want)
		}
	})

	t.Run("server-sent events stream", func(t *testing.T) {
		resp, err := http.Get(proxy.URL + "/events")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		// The first event arrives while the server still holds the
		// second: nothing buffers the stream.
		if line, err := br.ReadString('\n'); err != nil || line != "data: one\n" {
			t.Fatalf("first event: %q, %v", line, err)
		}
		close(release)
		rest, err := io.ReadAll(br)
		if err != nil || string(rest) != "\ndata: two\n\n" {
			t.Errorf("rest of the stream: %q, %v", rest, err)
		}
	})

	t.Run("upgrade", func(t *testing.T) {
		c, err := net.Dial("tcp", strings.TrimPrefix(proxy.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprint(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		for _, msg := range []string{"ping", "pong"} {
			fmt.Fprint(c, msg)
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
				t.Fatalf("echo: %q, %v; want %q", got, err, msg)
			}
		}
	})
}

func TestPortProxyErrors(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"image":"busybox"}`)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	tests := []struct {
		name   string
		id     string
		port   int
		status int
		want   rest.Error
	}{
		{"nothing listens", sb.ID, free, http.StatusBadGateway, rest.Error{Code: "unavailable",
			Message: fmt.Sprintf("nothing listens on port %d in the sandbox: dial tcp 127.0.0.1:%d: connect: connection refused", free, free)}},
		{"bad port", sb.ID, 0, http.StatusBadGateway, rest.Error{Code: "invalid_argument",
			Message: `invalid port "0": want a number from 1 to 65535`}},
		{"no such sandbox", "sb-nope", 8080, http.StatusServiceUnavailable, rest.Error{Code: "unavailable",
			Message: "sandbox sb-nope: guest agent unreachable: sandbox sb-nope not found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			e.srv.PortProxy(tt.id, tt.port).ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
			checkAPIError(t, w.Code, w.Body.Bytes(), tt.status, tt.want)
		})
	}
}

// TestPortProxyGRPC: a gRPC call over cleartext HTTP/2 reaches an h2c
// server in the sandbox over HTTP/2, with its body and trailers; a plain
// HTTP/2 request goes on as HTTP/1.1 (what any server speaks).
func TestPortProxyGRPC(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"image":"busybox"}`)
	h2c := new(http.Protocols)
	h2c.SetHTTP1(true)
	h2c.SetUnencryptedHTTP2(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &http.Server{Protocols: h2c, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "Grpc-Status")
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		fmt.Fprintf(w, "proto=%s body=%s", r.Proto, body)
		w.Header().Set("Grpc-Status", "0")
	})}
	go up.Serve(ln)
	t.Cleanup(func() { up.Close() })
	proxy := httptest.NewUnstartedServer(e.srv.PortProxy(sb.ID, ln.Addr().(*net.TCPAddr).Port))
	proxy.Config.Protocols = h2c
	proxy.Start()
	t.Cleanup(proxy.Close)
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	for _, tt := range []struct{ ctype, want string }{
		{"application/grpc", "proto=HTTP/2.0 body=ping"},
		{"text/plain", "proto=HTTP/1.1 body=ping"},
	} {
		req, _ := http.NewRequest("POST", proxy.URL+"/svc/Method", strings.NewReader("ping"))
		req.Header.Set("Content-Type", tt.ctype)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s: %v", tt.ctype, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || string(body) != tt.want {
			t.Errorf("%s: %s %q, want HTTP/2 with %q", tt.ctype, resp.Proto, body, tt.want)
		}
		if tt.ctype == "application/grpc" && resp.Trailer.Get("Grpc-Status") != "0" {
			t.Errorf("gRPC trailer: %v", resp.Trailer)
		}
	}
}
