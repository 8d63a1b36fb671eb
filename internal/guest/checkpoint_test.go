package guest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// newTestServer serves a 204 handler on a unix socket in a temp dir.
func newTestServer(t *testing.T) (*Server, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "guest.sock")
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	srv, err := NewServer(h, []string{"unix:" + sock}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop(time.Second) })
	return srv, sock
}

// get sends one request over a new connection to sock.
func get(sock string) error {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /health HTTP/1.1\r\nHost: guest\r\n\r\n")); err != nil {
		return err
	}
	_, err = http.ReadResponse(bufio.NewReader(c), nil)
	return err
}

// TestServerSuspendResume: Suspend closes the listener and every open
// connection; Resume listens again on the same (stale) socket path.
func TestServerSuspendResume(t *testing.T) {
	srv, sock := newTestServer(t)
	if err := get(sock); err != nil {
		t.Fatalf("request before suspend: %v", err)
	}
	idle, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	eventuallyTrue(t, func() bool { return countConns(srv) == 1 })

	srv.Suspend()
	if err := get(sock); err == nil {
		t.Fatalf("request while suspended succeeded")
	}
	_ = idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := idle.Read(make([]byte, 1)); err == nil {
		t.Fatalf("an open connection survived Suspend (read %d bytes)", n)
	}
	srv.Suspend() // idempotent

	if err := srv.Resume(); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if err := get(sock); err != nil {
		t.Fatalf("request after resume: %v", err)
	}
	if err := srv.Resume(); err != nil {
		t.Fatalf("second Resume: %v", err)
	}
	select {
	case err := <-srv.Errors():
		t.Fatalf("Suspend reported a listener failure: %v", err)
	default:
	}
}

// countConns counts the connections the server tracks.
func countConns(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	if s.cur != nil {
		for _, ln := range s.cur.lns {
			ln.mu.Lock()
			n += len(ln.conns)
			ln.mu.Unlock()
		}
	}
	return n
}

func eventuallyTrue(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition still false after 5s")
		}
		time.Sleep(5 * time.Millisecond) // polling, with the deadline above
	}
}

// TestCheckpointHook drives a Server through the control socket as runsc's
// save/restore binary does.
func TestCheckpointHook(t *testing.T) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	old := controlSocket
	controlSocket = "@den-guest-test-" + hex.EncodeToString(b[:])
	t.Cleanup(func() { controlSocket = old })
	srv, sock := newTestServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeControl(ctx, srv, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeControl: %v", err)
		}
	})
	var err error
	eventuallyTrue(t, func() bool { err = RunHook(ctx, HookResume); return err == nil })

	if err := RunHook(ctx, HookSave); err != nil {
		t.Fatalf("save hook: %v", err)
	}
	if err := get(sock); err == nil {
		t.Fatalf("agent still answers after the save hook")
	}
	if err := RunHook(ctx, HookRestore); err != nil {
		t.Fatalf("restore hook: %v", err)
	}
	if err := get(sock); err != nil {
		t.Fatalf("agent does not answer after the restore hook: %v", err)
	}
	err = RunHook(ctx, "bogus")
	if err == nil || !strings.Contains(err.Error(), `unknown phase "bogus"`) {
		t.Fatalf("hook with an unknown phase: %v", err)
	}
}

// TestRunHookWithoutAgent fails clearly when no agent listens.
func TestRunHookWithoutAgent(t *testing.T) {
	old := controlSocket
	controlSocket = "@den-guest-test-absent"
	t.Cleanup(func() { controlSocket = old })
	err := RunHook(context.Background(), HookSave)
	if err == nil || !strings.Contains(err.Error(), "checkpoint hook: dial agent") {
		t.Fatalf("RunHook without an agent: %v", err)
	}
}
