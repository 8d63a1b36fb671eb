package daemon

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
