package daemon

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serveLimited serves h on loopback with limits l; it returns the address.
func serveLimited(t *testing.T, h http.Handler, l httpLimits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(h, l)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

// dial connects to addr; reads on the connection give up after a minute
// so that a server that never cuts it fails the test instead of hanging.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(time.Minute))
	return c
}

// closedByServer reads c to its end and reports whether the server closed
// it (EOF or a reset), as opposed to the read deadline passing.
func closedByServer(c net.Conn) (bool, error) {
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false, err
	}
	return true, err
}

// TestHTTPLimits checks the limits of den's HTTP listeners against a real
// server: headers over the limit are a 431, a client that sends its
// headers slowly (slowloris) or keeps an idle connection is cut, and a
// response or request body that streams for longer than those limits is
// not.
func TestHTTPLimits(t *testing.T) {
	l := httpLimits{ReadHeader: 200 * time.Millisecond, Idle: 200 * time.Millisecond, MaxHeaderBytes: 1 << 20}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, _ *http.Request) {
		for i := range 5 {
			io.WriteString(w, strings.Repeat("x", i+1)+"\n")
			w.(http.Flusher).Flush()
			time.Sleep(l.Idle) // the stream outlasts both limits
		}
	})
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		io.WriteString(w, strings.Repeat("y", int(n)))
	})
	addr := serveLimited(t, mux, l)

	t.Run("header over 1 MiB is 431", func(t *testing.T) {
		c := dial(t, addr)
		// The server answers before it has read everything; write
		// while reading so that neither side blocks.
		go func() {
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
			io.WriteString(c, strings.Repeat("a", 2<<20)+"\r\n\r\n")
		}()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer to a 2 MiB header: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("2 MiB header: %s, want 431", resp.Status)
		}
	})
	t.Run("slow headers are cut", func(t *testing.T) {
		c := dial(t, addr)
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
			t.Fatal(err)
		}
		if ok, err := closedByServer(c); !ok {
			t.Fatalf("a connection that never finished its headers was not cut: %v", err)
		}
	})
	t.Run("h2c with slow headers is cut", func(t *testing.T) {
		c := dial(t, addr)
		io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		c.Write([]byte{0, 0, 0, 0x4, 0, 0, 0, 0, 0}) // an empty SETTINGS frame
		// A HEADERS frame of stream 1 that announces 100 bytes and
		// sends 3.
		c.Write([]byte{0, 0, 100, 0x1, 0, 0, 0, 0, 1, 0x82, 0x86, 0x84})
		if ok, err := closedByServer(c); !ok {
			t.Fatalf("an h2c connection that never finished its headers was not cut: %v", err)
		}
	})
	t.Run("h2c request", func(t *testing.T) {
		p := new(http.Protocols)
		p.SetUnencryptedHTTP2(true)
		hc := &http.Client{Transport: &http.Transport{Protocols: p}}
		resp, err := hc.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.ProtoMajor != 2 || string(body) != "ok" {
			t.Fatalf("h2c GET: %s %s %q", resp.Proto, resp.Status, body)
		}
	})
	t.Run("idle keep-alive is cut", func(t *testing.T) {
		c := dial(t, addr)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "ok" || resp.Close {
			t.Fatalf("keep-alive request: %s %q close=%v", resp.Status, body, resp.Close)
		}
		if _, err := br.ReadByte(); err == nil {
			t.Fatal("the server sent more than one response")
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("an idle keep-alive connection was not cut")
		}
	})
	t.Run("long response stream is not cut", func(t *testing.T) {
		resp, err := http.Get("http://" + addr + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if want := "x\nxx\nxxx\nxxxx\nxxxxx\n"; err != nil || string(body) != want {
			t.Fatalf("stream: %q, %v; want %q", body, err, want)
		}
	})
	t.Run("slow request body is not cut", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			for range 5 {
				pw.Write([]byte("z"))
				time.Sleep(l.ReadHeader) // the body outlasts both limits
			}
			pw.Close()
		}()
		resp, err := http.Post("http://"+addr+"/upload", "application/octet-stream", pr)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "yyyyy" {
			t.Fatalf("slow upload: %s %q", resp.Status, body)
		}
	})
}

// TestShutdownClosesUnusedConnections checks Shutdown ends a connection
// that never sent a request (net/http alone waits until it is 5 s old)
// and still lets a request in flight finish.
func TestShutdownClosesUnusedConnections(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "finished")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(mux, defaultHTTPLimits)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	addr := ln.Addr().String()

	unused := dial(t, addr)
	busy := dial(t, addr)
	if _, err := io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: den\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	<-started

	// Well under the 5 s net/http gives an unused connection.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	if closed, err := closedByServer(unused); !closed {
		t.Fatalf("the unused connection was not closed by Shutdown: %v", err)
	}
	close(release)
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatalf("the request in flight did not finish: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "finished" {
		t.Fatalf("request in flight answered %q, want %q", body, "finished")
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown = %v, want nil", err)
	}
	if err := <-served; err != http.ErrServerClosed {
		t.Fatalf("Serve = %v, want http.ErrServerClosed", err)
	}
}
