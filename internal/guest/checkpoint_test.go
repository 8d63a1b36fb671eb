package guest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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
	setCheckpointFile(t, filepath.Join(t.TempDir(), "absent")) // not in gVisor
	srv, sock := newTestServer(t)
	ctx := serveControl(t, srv)
	var err error
	eventuallyTrue(t, func() bool { _, err = RunHook(ctx, HookResume); return err == nil })

	if armed, err := RunHook(ctx, HookSave); err != nil || armed {
		t.Fatalf("save hook without a checkpoint file: armed %v, %v", armed, err)
	}
	if err := get(sock); err == nil {
		t.Fatalf("agent still answers after the save hook")
	}
	if _, err := RunHook(ctx, HookRestore); err != nil {
		t.Fatalf("restore hook: %v", err)
	}
	if err := get(sock); err != nil {
		t.Fatalf("agent does not answer after the restore hook: %v", err)
	}
	_, err = RunHook(ctx, "bogus")
	if err == nil || !strings.Contains(err.Error(), `unknown phase "bogus"`) {
		t.Fatalf("hook with an unknown phase: %v", err)
	}
}

// TestCheckpointHookArmed: with gVisor's checkpoint file (a FIFO here),
// the save hook answers armed and the agent listens again by itself once
// the file says the checkpoint is done, with no restore hook.
func TestCheckpointHookArmed(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "checkpoint")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// Held open read-write, so that the agent's open does not wait for a
	// writer and the FIFO never reads as closed.
	w, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	setCheckpointFile(t, fifo)
	srv, sock := newTestServer(t)
	ctx := serveControl(t, srv)
	eventuallyTrue(t, func() bool { _, err = RunHook(ctx, HookResume); return err == nil })

	armed, err := RunHook(ctx, HookSave)
	if err != nil || !armed {
		t.Fatalf("save hook with a checkpoint file: armed %v, %v", armed, err)
	}
	if err := get(sock); err == nil {
		t.Fatalf("agent still answers after the save hook")
	}
	if _, err := w.Write([]byte("restore\n")); err != nil {
		t.Fatal(err)
	}
	eventuallyTrue(t, func() bool { return get(sock) == nil })
}

// setCheckpointFile points checkpointFile at path for the test.
func setCheckpointFile(t *testing.T, path string) {
	old := checkpointFile
	checkpointFile = path
	t.Cleanup(func() { checkpointFile = old })
}

// serveControl serves srv's control socket, on a name of the test's own,
// until the test ends; the context it returns ends then too.
func serveControl(t *testing.T, srv *Server) context.Context {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	old := controlSocket
	controlSocket = "@den-guest-test-" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeControl(ctx, srv, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeControl: %v", err)
		}
		controlSocket = old
	})
	return ctx
}

// TestRunHookWithoutAgent fails clearly when no agent listens.
func TestRunHookWithoutAgent(t *testing.T) {
	old := controlSocket
	controlSocket = "@den-guest-test-absent"
	t.Cleanup(func() { controlSocket = old })
	_, err := RunHook(context.Background(), HookSave)
	if err == nil || !strings.Contains(err.Error(), "checkpoint hook: dial agent") {
		t.Fatalf("RunHook without an agent: %v", err)
	}
}
