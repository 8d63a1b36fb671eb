package daemon

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestLeaderProxy(t *testing.T) {
	// The leader streams: a line, then the next only once the client has
	// read the first (a buffering proxy would deadlock here).
	readFirst := make(chan struct{})
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "leader saw host "+r.Host+"\n")
		w.(http.Flusher).Flush()
		if r.URL.Path == "/v1/stream" {
			select {
			case <-readFirst:
			case <-time.After(20 * time.Second):
				io.WriteString(w, "the proxy held the first line back\n")
				return
			}
		}
		io.WriteString(w, "done\n")
	}))
	defer leader.Close()
	var state atomic.Int32 // 0 follower, 1 leader, 2 no leader
	p := &leaderProxy{
		leader: func() (string, bool, bool) {
			switch state.Load() {
			case 1:
				return "", true, true
			case 2:
				return "", false, false
			}
			return leader.Listener.Addr().String(), false, true
		},
		dial: func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
		local: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "local\n") }),
		wait:  300 * time.Millisecond,
		own:   map[string]bool{"/health": true},
	}
	front := httptest.NewServer(p)
	defer front.Close()

	req, _ := http.NewRequest("GET", front.URL+"/v1/stream", nil)
	req.Host = "8080-sb1.den.example"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(resp.Body)
	first, err := r.ReadString('\n')
	if err != nil || first != "leader saw host 8080-sb1.den.example\n" {
		t.Fatalf("first line %q %v", first, err)
	}
	close(readFirst)
	rest, _ := io.ReadAll(r)
	resp.Body.Close()
	if string(rest) != "done\n" {
		t.Fatalf("rest %q", rest)
	}
	if got := get(t, front.URL+"/health"); got != "local\n" {
		t.Fatalf("a path the follower answers itself: %q", got)
	}
	if got := get(t, front.URL+"/v1/sandboxes"); got != "leader saw host "+strings.TrimPrefix(front.URL, "http://")+"\ndone\n" {
		t.Fatalf("a plain request: %q", got)
	}
	state.Store(1)
	if got := get(t, front.URL+"/v1/sandboxes"); got != "local\n" {
		t.Fatalf("on the leader: %q", got)
	}
	state.Store(2)
	resp, err = http.Get(front.URL + "/v1/sandboxes")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), `"code":"unavailable"`) || !strings.Contains(string(body), "no leader") {
		t.Fatalf("with no leader: %d %s", resp.StatusCode, body)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestLeaderProxyWaitsOutAnElection: the follower still names a leader
// that died; the request waits for the new one rather than failing.
func TestLeaderProxyWaitsOutAnElection(t *testing.T) {
	newLeader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "new leader\n") }))
	defer newLeader.Close()
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	start := time.Now()
	p := &leaderProxy{
		leader: func() (string, bool, bool) {
			if time.Since(start) < 300*time.Millisecond {
				return deadAddr, false, true
			}
			return newLeader.Listener.Addr().String(), false, true
		},
		dial: func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
		local: http.NotFoundHandler(),
		wait:  10 * time.Second,
	}
	front := httptest.NewServer(p)
	defer front.Close()
	if got := get(t, front.URL+"/v1/tenants"); got != "new leader\n" {
		t.Fatalf("got %q", got)
	}
}

// TestLeaderProxyKeepsConnections: requests to one leader reuse kept
// connections; when another server leads, requests go to it on its own.
func TestLeaderProxyKeepsConnections(t *testing.T) {
	serve := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
	}
	a, b := serve("a"), serve("b")
	defer a.Close()
	defer b.Close()
	var leader atomic.Value
	leader.Store(a.Listener.Addr().String())
	dials := map[string]int{}
	var mu sync.Mutex
	p := &leaderProxy{
		leader: func() (string, bool, bool) { return leader.Load().(string), false, true },
		dial: func(ctx context.Context, addr string) (net.Conn, error) {
			mu.Lock()
			dials[addr]++
			mu.Unlock()
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
		local: http.NotFoundHandler(),
		wait:  time.Second,
	}
	front := httptest.NewServer(p)
	defer front.Close()
	for range 20 {
		if got := get(t, front.URL+"/v1/sandboxes"); got != "a" {
			t.Fatalf("got %q from the first leader", got)
		}
	}
	leader.Store(b.Listener.Addr().String())
	for range 20 {
		if got := get(t, front.URL+"/v1/sandboxes"); got != "b" {
			t.Fatalf("got %q after the leader changed", got)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if da, db := dials[a.Listener.Addr().String()], dials[b.Listener.Addr().String()]; da != 1 || db != 1 {
		t.Fatalf("20 sequential requests to each leader dialled a %d and b %d times, want once each", da, db)
	}
}

// TestOnlyWhileLeading: a server refuses passed-on requests once it no
// longer leads.
func TestOnlyWhileLeading(t *testing.T) {
	var leading atomic.Bool
	h := onlyWhileLeading(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "served") }), leading.Load)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/sandboxes", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), `"code":"unavailable"`) {
		t.Fatalf("not leading: %d %s", rec.Code, rec.Body)
	}
	leading.Store(true)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/sandboxes", nil))
	if rec.Code != 200 || rec.Body.String() != "served" {
		t.Fatalf("leading: %d %s", rec.Code, rec.Body)
	}
}

func TestSetUserTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	setUserTimeout(c, 15*time.Second)
	raw, _ := c.(*net.TCPConn).SyscallConn()
	var got int
	var gerr error
	raw.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT) })
	if gerr != nil || got != 15000 {
		t.Fatalf("TCP_USER_TIMEOUT = %d, %v; want 15000", got, gerr)
	}
}

// deadConn is a kept connection whose peer died: its next write fails
// before any byte leaves, while its read side has not noticed yet.
type deadConn struct {
	net.Conn
	dead *atomic.Bool
}

func (c deadConn) Write(b []byte) (int, error) {
	if c.dead.Load() {
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: unix.EPIPE}
	}
	return c.Conn.Write(b)
}

// TestLeaderProxyRetriesADeadKeptConnection: a write (a POST with a JSON
// body) on a kept connection to a leader that has just died is sent again
// on a new connection, to the next leader, and succeeds: nothing of it
// had reached the dead one.
func TestLeaderProxyRetriesADeadKeptConnection(t *testing.T) {
	serve := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			io.WriteString(w, name+":"+string(b))
		}))
	}
	a, b := serve("a"), serve("b")
	defer a.Close()
	defer b.Close()
	var dead atomic.Bool
	var leader atomic.Value
	leader.Store(a.Listener.Addr().String())
	p := &leaderProxy{
		leader: func() (string, bool, bool) { return leader.Load().(string), false, true },
		dial: func(ctx context.Context, addr string) (net.Conn, error) {
			if addr == a.Listener.Addr().String() && dead.Load() {
				return nil, &net.OpError{Op: "dial", Net: "tcp", Err: unix.ECONNREFUSED}
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil || addr != a.Listener.Addr().String() {
				return c, err
			}
			return deadConn{Conn: c, dead: &dead}, nil // a's connections die with it
		},
		local: http.NotFoundHandler(),
		wait:  5 * time.Second,
	}
	front := httptest.NewServer(p)
	defer front.Close()
	post := func() (int, string) {
		resp, err := http.Post(front.URL+"/v1/tenants", "application/json", strings.NewReader(`{"name":"acme"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := post(); code != http.StatusOK || body != `a:{"name":"acme"}` {
		t.Fatalf("first write: %d %q", code, body)
	}
	// The leader dies; it is still named until the election names b.
	dead.Store(true)
	elected := time.AfterFunc(200*time.Millisecond, func() { leader.Store(b.Listener.Addr().String()) })
	defer elected.Stop()
	if code, body := post(); code != http.StatusOK || body != `b:{"name":"acme"}` {
		t.Fatalf("write after the leader died: %d %q, want it sent again to the new leader", code, body)
	}
}
