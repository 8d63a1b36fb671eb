package gvisor

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/denhq/den/internal/errdefs"
)

// fakeAgent is the agent's end of a pre-dialled connection: it reads
// requests one by one and answers each as answer says.
type fakeAgent struct {
	conn  net.Conn
	paths chan string // the path of each request read
}

func newFakeAgent(t *testing.T, answer func(path string) (status int, cut bool)) (*fakeAgent, net.Conn) {
	t.Helper()
	host, agent := net.Pipe()
	fa := &fakeAgent{conn: agent, paths: make(chan string, 8)}
	t.Cleanup(func() { host.Close(); agent.Close() })
	go func() {
		br := bufio.NewReader(agent)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			fa.paths <- req.URL.Path
			status, cut := answer(req.URL.Path)
			if cut {
				agent.Close()
				return
			}
			resp := &http.Response{StatusCode: status, ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}, ContentLength: 0}
			if status != http.StatusNoContent {
				msg := "init: set hostname: EPERM"
				resp.Body, resp.ContentLength = io.NopCloser(strings.NewReader(msg)), int64(len(msg))
			}
			if err := resp.Write(agent); err != nil {
				return
			}
		}
	}()
	return fa, host
}

// sendInitT sends an init on conn from a goroutine: a net.Pipe write
// blocks until the fake agent reads it.
func sendInitT(t *testing.T, conn net.Conn) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- sendInit(conn, guestInit{Hostname: "sb"}) }()
	t.Cleanup(func() {
		if err := <-errc; err != nil {
			t.Errorf("sendInit: %v", err)
		}
	})
}

// TestPendingInitGatesDials checks the first DialGuest of a claim waits
// for the /init answer and then gets the connection, ready for its own
// request, and that a second dialler waits too and dials anew.
func TestPendingInitGatesDials(t *testing.T) {
	release := make(chan struct{})
	fa, conn := newFakeAgent(t, func(path string) (int, bool) {
		if path == "/init" {
			<-release
		}
		return http.StatusNoContent, false
	})
	var g guestConns
	sendInitT(t, conn)
	g.putInit("sb", conn, func(context.Context) error { t.Error("retry called"); return nil })
	if p := <-fa.paths; p != "/init" {
		t.Fatalf("agent read %s, want /init", p)
	}
	type taken struct {
		conn net.Conn
		err  error
	}
	got := make(chan taken, 2)
	for range 2 {
		go func() {
			c, err := g.take(context.Background(), "sb")
			got <- taken{c, err}
		}()
	}
	select {
	case tk := <-got:
		t.Fatalf("take returned %v, %v before the init was answered", tk.conn, tk.err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	a, b := <-got, <-got
	if a.err != nil || b.err != nil {
		t.Fatalf("take errors: %v, %v", a.err, b.err)
	}
	if (a.conn == nil) == (b.conn == nil) {
		t.Fatalf("takes got %v and %v, want the connection exactly once", a.conn, b.conn)
	}
	c := a.conn
	if c == nil {
		c = b.conn
	}
	req, _ := http.NewRequest(http.MethodGet, "http://guest/health", nil)
	go req.Write(c)
	if p := <-fa.paths; p != "/health" {
		t.Fatalf("the next request on the connection reached the agent as %s, want /health", p)
	}
	if c, err := g.take(context.Background(), "sb"); c != nil || err != nil {
		t.Errorf("take after the connection was taken = %v, %v, want nothing", c, err)
	}
}

// TestPendingInitFailure checks an init the agent refused fails every
// dial of the sandbox with its reason until the sandbox is dropped.
func TestPendingInitFailure(t *testing.T) {
	_, conn := newFakeAgent(t, func(string) (int, bool) { return http.StatusInternalServerError, false })
	var g guestConns
	sendInitT(t, conn)
	g.putInit("sb", conn, func(context.Context) error { t.Error("retry called for an answer"); return nil })
	for range 2 {
		c, err := g.take(context.Background(), "sb")
		if c != nil || errdefs.KindOf(err) != errdefs.Unavailable || !strings.Contains(err.Error(), "EPERM") {
			t.Fatalf("take = %v, %v; want Unavailable naming the agent's answer", c, err)
		}
	}
	g.drop("sb")
	if c, err := g.take(context.Background(), "sb"); c != nil || err != nil {
		t.Errorf("take after drop = %v, %v, want nothing", c, err)
	}
}

// TestPendingInitRetriesOnCut checks an init whose connection was cut
// before the answer is sent again (retry), and its result is what dials
// see.
func TestPendingInitRetriesOnCut(t *testing.T) {
	for _, retryErr := range []error{nil, errors.New("guest init: connection refused")} {
		_, conn := newFakeAgent(t, func(string) (int, bool) { return 0, true })
		var g guestConns
		var retries atomic.Int32
		sendInitT(t, conn)
		g.putInit("sb", conn, func(context.Context) error { retries.Add(1); return retryErr })
		c, err := g.take(context.Background(), "sb")
		if n := retries.Load(); n != 1 {
			t.Errorf("retries = %d, want 1", n)
		}
		if c != nil {
			t.Errorf("take returned the cut connection")
		}
		if (err != nil) != (retryErr != nil) || (err != nil && !strings.Contains(err.Error(), "connection refused")) {
			t.Errorf("take error = %v, want the retry's (%v)", err, retryErr)
		}
	}
}

// TestPendingInitDropAndCancel checks a dial gives up with its context
// and a sandbox dropped while its init is pending (destroy) is not
// initialised again.
func TestPendingInitDropAndCancel(t *testing.T) {
	release := make(chan struct{})
	_, conn := newFakeAgent(t, func(string) (int, bool) { <-release; return http.StatusNoContent, false })
	defer close(release)
	var g guestConns
	sendInitT(t, conn)
	var retries atomic.Int32
	g.putInit("sb", conn, func(context.Context) error { retries.Add(1); return nil })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if c, err := g.take(ctx, "sb"); c != nil || errdefs.KindOf(err) != errdefs.Unavailable {
		t.Errorf("take with an expired context = %v, %v; want Unavailable", c, err)
	}
	pi := g.m["sb"].init
	g.drop("sb")
	select {
	case <-pi.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the pending init did not end after drop")
	}
	if n := retries.Load(); n != 0 {
		t.Errorf("retries after drop = %d, want 0", n)
	}
}
