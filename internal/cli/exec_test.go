package cli

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
	den "github.com/denhq/den/sdk/go"
)

// readyWriter collects output and closes ready once it contains "ready".
type readyWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	once  sync.Once
	ready chan struct{}
}

func (w *readyWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	if strings.Contains(w.buf.String(), "ready") {
		w.once.Do(func() { close(w.ready) })
	}
	return len(b), nil
}

func TestInterruptForwarding(t *testing.T) {
	srv := newEnv(t)
	c, err := den.NewClient(den.Options{URL: srv.URL, APIKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		script     string
		interrupts int
		want       int
	}{
		{"SIGTERM on first", `trap "exit 9" TERM; echo ready; sleep 600 & wait`, 1, 9},
		{"SIGKILL on second", `trap "" TERM; echo ready; exec sleep 600`, 2, 137},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb, err := c.Create(context.Background(), rest.CreateSandboxRequest{})
			if err != nil {
				t.Fatal(err)
			}
			out := &readyWriter{ready: make(chan struct{})}
			cmd := &cobra.Command{}
			cmd.SetOut(out)
			cmd.SetErr(&bytes.Buffer{})
			sigs := make(chan os.Signal, 2)
			done := make(chan struct{})
			defer close(done)
			go func() {
				select {
				case <-out.ready:
				case <-done:
					return
				}
				for range tc.interrupts {
					sigs <- os.Interrupt
				}
			}()
			a := &app{}
			code, err := a.execIn(context.Background(), cmd, sb, &execFlags{}, []string{"sh", "-c", tc.script}, sigs)
			if err != nil || code != tc.want {
				t.Fatalf("exit %d, %v; want %d", code, err, tc.want)
			}
		})
	}
}

func TestExecTTYWithoutTerminal(t *testing.T) {
	srv := newEnv(t)
	id := strings.TrimSpace(ok(t, srv.URL, "", "create"))
	r := cli(t, srv.URL, "", "exec", "-t", id, "--", "sh", "-c", "stty size; echo $TERM; test -t 1 && echo tty")
	want := "24 80\r\n" + termName() + "\r\ntty\r\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("exec -t: %+v, want stdout %q", r, want)
	}
}
