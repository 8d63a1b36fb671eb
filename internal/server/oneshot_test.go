package server

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// oneShotTo is a oneShotTransport to srv that counts its dials.
func oneShotTo(srv *httptest.Server, dials *atomic.Int32) *oneShotTransport {
	return &oneShotTransport{maxHeader: 64 << 10, dial: func(ctx context.Context) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, "tcp", srv.Listener.Addr().String())
	}}
}

// Through a guest proxy on one-shot connections, each stream has a
// connection of its own, closed when the stream ends.
func TestOneShotProxyStreams(t *testing.T) {
	var closed atomic.Int32
	guest := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/connect+proto")
		_, _ = w.Write(connectMsg(0, "start"))
		w.(http.Flusher).Flush()
		_, _ = w.Write(connectMsg(0, "end"))
		_, _ = w.Write(connectMsg(connectFlagEndStream, "{}"))
	}))
	guest.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			closed.Add(1)
		}
	}
	guest.Start()
	defer guest.Close()
	var dials atomic.Int32
	proxies := newGuestProxies(func(ctx context.Context, id string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, "tcp", guest.Listener.Addr().String())
	}, true, func(context.Context, string) string { return "lost" })
	for i := range 3 {
		rec := httptest.NewRecorder()
		proxies.get("sb").ServeHTTP(rec, httptest.NewRequest("POST", "/process.Process/Start", strings.NewReader("x")))
		if _, payloads := readConnectMsgs(t, rec.Body.Bytes()); len(payloads) != 3 || payloads[1] != "end" {
			t.Fatalf("request %d: messages %q", i, payloads)
		}
	}
	if n := dials.Load(); n != 3 {
		t.Fatalf("3 streams dialled the guest %d times, want 3", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for closed.Load() != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 3 guest connections closed after their streams", closed.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A request body streams while its response does (full duplex), and a
// cancelled request ends the exchange at once.
func TestOneShotFullDuplexAndCancel(t *testing.T) {
	guest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			io.WriteString(w, "echo "+sc.Text()+"\n")
			w.(http.Flusher).Flush()
		}
	}))
	defer guest.Close()
	var dials atomic.Int32
	tr := oneShotTo(guest, &dials)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://guest/echo", pr)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for _, word := range []string{"a", "b"} {
		io.WriteString(pw, word+"\n")
		line, err := br.ReadString('\n')
		if err != nil || line != "echo "+word+"\n" {
			t.Fatalf("after sending %q read %q, %v", word, line, err)
		}
	}
	cancel()
	done := make(chan error, 1)
	go func() { _, err := br.ReadString('\n'); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a read after the request was cancelled succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled request's body still blocks")
	}
	resp.Body.Close()
	pw.Close()
}

// Oversized response headers fail the request; a guest that hangs up
// before answering fails it too.
func TestOneShotBadGuests(t *testing.T) {
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", strings.Repeat("x", 100<<10))
		w.WriteHeader(http.StatusOK)
	}))
	defer big.Close()
	var dials atomic.Int32
	req, _ := http.NewRequest("GET", "http://guest/", nil)
	if _, err := oneShotTo(big, &dials).RoundTrip(req); err == nil || !strings.Contains(err.Error(), "exceed") {
		t.Fatalf("100 KiB of headers over a 64 KiB limit = %v, want an error naming the limit", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	tr := &oneShotTransport{maxHeader: 1 << 10, dial: func(ctx context.Context) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
	}}
	if _, err := tr.RoundTrip(req); err == nil {
		t.Fatal("a guest that hung up answered")
	}
}

// An upgrade (101) hands over the connection both ways.
func TestOneShotUpgrade(t *testing.T) {
	guest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo " + line)
		brw.Flush()
	}))
	defer guest.Close()
	var dials atomic.Int32
	req, _ := http.NewRequest("GET", "http://guest/sftp", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := oneShotTo(guest, &dials).RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade = %v, %v", resp, err)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("the body of a 101 is %T, not a connection", resp.Body)
	}
	defer rwc.Close()
	io.WriteString(rwc, "ping\n")
	line, err := bufio.NewReader(rwc).ReadString('\n')
	if err != nil || line != "echo ping\n" {
		t.Fatalf("over the upgraded connection read %q, %v", line, err)
	}
}
