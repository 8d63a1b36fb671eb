package den_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/guest"
	den "github.com/denhq/den/sdk/go"
	"github.com/denhq/den/sdk/go/dentest"
)

// newSandbox starts a fake server whose sandboxes are served by a real
// guest agent in this process, and creates one sandbox.
func newSandbox(t *testing.T) (*den.Client, *den.Sandbox) {
	t.Helper()
	agent, err := guest.New(guest.Config{DefaultUser: "", Env: os.Environ()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Close() })
	srv := dentest.NewServer(dentest.Config{APIKey: testKey, Envd: agent.Handler()})
	t.Cleanup(srv.Close)
	c, err := den.NewClient(den.Options{URL: srv.URL, APIKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	sb, err := c.Create(context.Background(), rest.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return c, sb
}

func TestExecOutputAndExitCode(t *testing.T) {
	_, sb := newSandbox(t)
	var stdout, stderr bytes.Buffer
	var pid uint32
	st, err := sb.Exec(context.Background(), den.ExecOptions{
		Cmd: "/bin/sh", Args: []string{"-c", `echo out; echo err >&2; echo "$GREETING"; pwd; exit 3`},
		Env: map[string]string{"GREETING": "hi"}, Cwd: "/tmp",
		Stdout: &stdout, Stderr: &stderr, OnStart: func(p uint32) { pid = p },
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Code != 3 || !st.Exited || pid == 0 {
		t.Fatalf("status %+v pid %d, want exited with 3 and a pid", st, pid)
	}
	if got, want := stdout.String(), "out\nhi\n/tmp\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	if got, want := stderr.String(), "err\n"; got != want {
		t.Errorf("stderr = %q, want %q", got, want)
	}
}

func TestRun(t *testing.T) {
	_, sb := newSandbox(t)
	res, err := sb.Run(context.Background(), "echo ok")
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "ok\n" || res.Code != 0 {
		t.Fatalf("Run = %+v (stdout %q)", res.ExitStatus, res.Stdout)
	}
}

func TestExecStdin(t *testing.T) {
	_, sb := newSandbox(t)
	var stdout bytes.Buffer
	in := strings.Repeat("line of input\n", 10000) // several SendInput chunks
	st, err := sb.Exec(context.Background(), den.ExecOptions{
		Cmd: "wc", Args: []string{"-c"}, Stdin: strings.NewReader(in), Stdout: &stdout,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(stdout.String()); st.Code != 0 || got != "140000" {
		t.Fatalf("wc -c = %q, status %+v; want 140000", got, st)
	}
}

func TestExecPTY(t *testing.T) {
	_, sb := newSandbox(t)
	var out bytes.Buffer
	st, err := sb.Exec(context.Background(), den.ExecOptions{
		Cmd: "/bin/sh", Args: []string{"-c", "stty size; test -t 0 && echo tty"},
		PTY: &den.PTYSize{Cols: 100, Rows: 30}, Stdout: &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := out.String(); st.Code != 0 || !strings.Contains(got, "30 100") || !strings.Contains(got, "tty") {
		t.Fatalf("pty output %q, status %+v", got, st)
	}
}

func TestProcessControl(t *testing.T) {
	ctx := context.Background()
	_, sb := newSandbox(t)
	started := make(chan uint32, 1)
	type result struct {
		st  den.ExitStatus
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := sb.Exec(ctx, den.ExecOptions{
			Cmd: "sleep", Args: []string{"600"}, Tag: "sleeper",
			OnStart: func(pid uint32) { started <- pid },
		})
		done <- result{st, err}
	}()
	pid := <-started
	procs, err := sb.Processes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !hasProcess(procs, pid, "sleeper") {
		t.Fatalf("Processes = %+v, want pid %d tagged sleeper", procs, pid)
	}
	if err := sb.Signal(ctx, den.Selector{Tag: "sleeper"}, den.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.st.Exited || r.st.Status != "signal: killed" {
		t.Fatalf("Exec after kill = %+v, %v", r.st, r.err)
	}
	err = sb.Signal(ctx, den.Selector{PID: pid}, den.SIGTERM)
	if !den.IsNotFound(err) {
		t.Fatalf("Signal to ended process: %v, want not_found", err)
	}
}

func hasProcess(procs []den.ProcessInfo, pid uint32, tag string) bool {
	for _, p := range procs {
		if p.PID == pid && p.Tag == tag && p.Cmd == "sleep" {
			return true
		}
	}
	return false
}

func TestConnectReattach(t *testing.T) {
	ctx := context.Background()
	_, sb := newSandbox(t)
	stdin, stdinW := io.Pipe() // nothing is typed until the test ends
	t.Cleanup(func() { stdinW.Close() })
	cctx, cancel := context.WithCancel(ctx)
	started := make(chan uint32, 1)
	first := make(chan error, 1)
	go func() {
		_, err := sb.Exec(cctx, den.ExecOptions{
			Cmd: "/bin/sh", Args: []string{"-c", "read line; echo got $line; exit 4"},
			Stdin: stdin, OnStart: func(pid uint32) { started <- pid },
		})
		first <- err
	}()
	pid := <-started
	cancel() // stop waiting; the process keeps running
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("Exec after cancel: %v, want context.Canceled", err)
	}
	var out bytes.Buffer
	attached := make(chan struct{})
	res := make(chan error, 1)
	var st den.ExitStatus
	go func() {
		var err error
		st, err = sb.Attach(ctx, den.Selector{PID: pid}, den.AttachOptions{
			Stdout: &out, OnAttach: func(uint32) { close(attached) },
		})
		res <- err
	}()
	<-attached
	if err := sb.SendInput(ctx, den.Selector{PID: pid}, []byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if st.Code != 4 || out.String() != "got hello\n" {
		t.Fatalf("Attach status %+v, output %q; want 4 and %q", st, out.String(), "got hello\n")
	}
}

func TestFiles(t *testing.T) {
	ctx := context.Background()
	_, sb := newSandbox(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "hello.txt")
	if err := sb.WriteFile(ctx, p, strings.NewReader("hello world")); err != nil {
		t.Fatal(err)
	}
	body, err := sb.ReadFile(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(body)
	body.Close()
	if err != nil || string(got) != "hello world" {
		t.Fatalf("ReadFile = %q, %v", got, err)
	}
	info, err := sb.Stat(ctx, p)
	if err != nil || info.Type != den.TypeFile || info.Size != 11 || info.Name != "hello.txt" {
		t.Fatalf("Stat = %+v, %v", info, err)
	}
	if _, err := sb.MakeDir(ctx, filepath.Join(dir, "made")); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.MakeDir(ctx, filepath.Join(dir, "made")); !den.IsAlreadyExists(err) {
		t.Fatalf("MakeDir twice: %v, want already_exists", err)
	}
	if _, err := sb.Move(ctx, p, filepath.Join(dir, "made", "moved.txt")); err != nil {
		t.Fatal(err)
	}
	entries, err := sb.ListDir(ctx, dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimPrefix(e.Path, dir+"/"))
	}
	if diff := cmp.Diff([]string{"made", "made/moved.txt", "sub"}, names); diff != "" {
		t.Fatalf("ListDir (-want +got):\n%s", diff)
	}
	if err := sb.Remove(ctx, filepath.Join(dir, "made")); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.ReadFile(ctx, filepath.Join(dir, "made", "moved.txt")); !den.IsNotFound(err) {
		t.Fatalf("ReadFile removed: %v, want not found", err)
	}
}

func TestWatch(t *testing.T) {
	ctx := context.Background()
	_, sb := newSandbox(t)
	dir := t.TempDir()
	w, err := sb.Watch(ctx, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := sb.WriteFile(ctx, filepath.Join(dir, "new.txt"), strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	for ev, err := range w.Events() {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Name == "new.txt" && ev.Op == den.OpCreate {
			return
		}
	}
	t.Fatal("watch ended without the create event")
}

func TestGuestErrors(t *testing.T) {
	ctx := context.Background()
	c, _ := newSandbox(t)
	gone := c.Sandbox("sb-nope")
	_, err := gone.Run(ctx, "true")
	if !den.IsNotFound(err) || !strings.Contains(err.Error(), "sandbox sb-nope not found") {
		t.Fatalf("Run in unknown sandbox: %v, want sandbox not found", err)
	}
	if _, err := gone.Stat(ctx, "/"); !den.IsNotFound(err) {
		t.Fatalf("Stat in unknown sandbox: %v, want not found", err)
	}
	if _, err := gone.ReadFile(ctx, "/etc/hostname"); !den.IsNotFound(err) {
		t.Fatalf("ReadFile in unknown sandbox: %v, want not found", err)
	}
}

func TestSuspendResume(t *testing.T) {
	c, sb := newSandbox(t)
	ctx := context.Background()
	s, err := sb.AsUser("nobody").Suspend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.State != rest.StateSuspended || s.SuspendedAt == nil || s.User() != "nobody" {
		t.Fatalf("after Suspend: state %s, suspended_at %v, user %q", s.State, s.SuspendedAt, s.User())
	}
	if _, err := c.Suspend(ctx, sb.ID); !den.IsConflict(err) {
		t.Fatalf("Suspend of a suspended sandbox: %v, want a conflict", err)
	}
	r, err := c.Resume(ctx, sb.ID)
	if err != nil || r.State != rest.StateRunning {
		t.Fatalf("Resume: %+v, %v", r, err)
	}
	if _, err := r.Resume(ctx); !den.IsConflict(err) {
		t.Fatalf("Resume of a running sandbox: %v, want a conflict", err)
	}
	// A call into a suspended sandbox resumes it.
	if _, err := sb.Suspend(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := sb.Run(ctx, "echo back"); err != nil || string(res.Stdout) != "back\n" {
		t.Fatalf("Run in a suspended sandbox: %+v, %v", res, err)
	}
	if got, err := c.Get(ctx, sb.ID); err != nil || got.State != rest.StateRunning {
		t.Fatalf("after a call into the suspended sandbox: %+v, %v", got, err)
	}
	if _, err := c.Suspend(ctx, "nosuch"); !den.IsNotFound(err) || err.Error() != "suspend sandbox nosuch: sandbox nosuch not found (not_found)" {
		t.Fatalf("Suspend of an unknown sandbox: %v", err)
	}
}

// TestExecKeepsConnection: Exec reads what follows a process's end event
// (the end of the stream), so the next call reuses the connection instead
// of dialling a new one (and den a new one into the sandbox).
func TestExecKeepsConnection(t *testing.T) {
	agent, err := guest.New(guest.Config{DefaultUser: "", Env: os.Environ()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Close() })
	srv := dentest.NewServer(dentest.Config{APIKey: testKey, Envd: agent.Handler()})
	t.Cleanup(srv.Close)
	var dials atomic.Int32
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := den.NewClient(den.Options{URL: srv.URL, APIKey: testKey, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sb, err := c.Create(ctx, rest.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := sb.Exec(ctx, den.ExecOptions{Cmd: "/bin/true"}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // the end of the stream is read in the background
	}
	if n := dials.Load(); n > 2 {
		t.Errorf("a create and 5 execs dialled %d connections, want them to share one or two", n)
	}
}
