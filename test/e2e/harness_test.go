// Package e2e runs whole-system tests: the real den binary (`den up`) with
// the real runsc and den-guest, driven through the den CLI and the Go SDK.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/testenv"
)

// denBin returns the den binary under test: $DEN_BIN or bin/den.
func denBin(t testing.TB) string {
	t.Helper()
	testenv.RequireRoot(t)
	p := os.Getenv("DEN_BIN")
	if p == "" {
		p = filepath.Join(testenv.RepoRoot(), "bin", "den")
	}
	if _, err := os.Stat(p); err != nil {
		testenv.Missing(t, "den binary not found at %s: run `make build`", p)
	}
	for _, name := range []string{"runsc", "den-guest"} {
		if _, err := os.Stat(filepath.Join(filepath.Dir(p), name)); err != nil {
			testenv.Missing(t, "%s not found next to %s: run `make build`", name, p)
		}
	}
	return p
}

// instance is one running `den up`.
type instance struct {
	t       testing.TB
	bin     string
	dataDir string
	url     string
	key     string
	cmd     *exec.Cmd
	log     *bytes.Buffer
	// upArgs are extra `den up` flags; upWait bounds its start.
	upArgs []string
	upWait time.Duration
}

// startDen starts `den up` on dataDir (a new temp dir when empty) and waits
// for it to print its URL and key.
func startDen(t *testing.T, dataDir string) *instance {
	t.Helper()
	bin := denBin(t)
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	in := &instance{t: t, bin: bin, dataDir: dataDir, log: &bytes.Buffer{}, upArgs: []string{"--no-base"}, upWait: time.Minute}
	in.start()
	t.Cleanup(func() { in.removeAll(); in.stop() })
	return in
}

func (in *instance) start() {
	t := in.t
	t.Helper()
	cmd := exec.Command(in.bin, append([]string{"up", "--data-dir", in.dataDir, "--listen", "127.0.0.1:0"}, in.upArgs...)...)
	cmd.Stderr = in.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start den up: %v", err)
	}
	in.cmd = cmd
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(in.upWait)
	for in.url == "" || in.key == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("den up exited before printing DEN_URL/DEN_API_KEY:\n%s", in.log)
			}
			if v, ok := strings.CutPrefix(l, "DEN_URL="); ok {
				in.url = v
			}
			if v, ok := strings.CutPrefix(l, "DEN_API_KEY="); ok {
				in.key = v
			}
		case <-deadline:
			t.Fatalf("den up printed no DEN_URL within %s:\n%s", in.upWait, in.log)
		}
	}
	go func() {
		for range lines {
		}
	}()
}

// stop interrupts den like Ctrl-C and waits for a clean exit.
func (in *instance) stop() {
	if in.cmd == nil || in.cmd.Process == nil {
		return
	}
	_ = in.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- in.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil && !in.t.Failed() {
			in.t.Errorf("den up did not exit cleanly on interrupt: %v\n%s", err, in.log)
		}
	case <-time.After(20 * time.Second):
		_ = in.cmd.Process.Kill()
		in.t.Errorf("den up did not exit within 20s of an interrupt\n%s", in.log)
	}
	in.cmd = nil
}

// kill9 kills den with SIGKILL, as a crash would.
func (in *instance) kill9() {
	_ = in.cmd.Process.Kill()
	_ = in.cmd.Wait()
	in.cmd = nil
	in.url, in.key = "", ""
}

// removeAll deletes every sandbox (they outlive den otherwise).
func (in *instance) removeAll() {
	if in.cmd == nil {
		return
	}
	res := in.den(nil, "ls", "--json")
	if res.code != 0 {
		return
	}
	for _, id := range jsonIDs(res.stdout) {
		in.den(nil, "rm", id)
	}
}

type result struct {
	stdout, stderr string
	code           int
}

// den runs the den CLI against this instance.
func (in *instance) den(stdin io.Reader, args ...string) result {
	return in.denCtx(context.Background(), stdin, args...)
}

func (in *instance) denCtx(ctx context.Context, stdin io.Reader, args ...string) result {
	in.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, in.bin, args...)
	cmd.Env = append(os.Environ(), "DEN_URL="+in.url, "DEN_API_KEY="+in.key)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &stdout, &stderr, stdin
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		in.t.Fatalf("den %v: %v", args, err)
	}
	return res
}

// mustDen runs the CLI and fails the test unless it exits 0.
func (in *instance) mustDen(args ...string) string {
	in.t.Helper()
	res := in.den(nil, args...)
	if res.code != 0 {
		in.t.Fatalf("den %s: exit %d\nstdout: %s\nstderr: %s\nden log:\n%s", strings.Join(args, " "), res.code, res.stdout, res.stderr, tail(in.log.String(), 3000))
	}
	return res.stdout
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// jsonIDs reads sandbox IDs from `den ls --json` output: an array of
// sandboxes or a {"sandboxes": [...]} page.
func jsonIDs(s string) []string {
	var list []rest.Sandbox
	if err := json.Unmarshal([]byte(s), &list); err != nil {
		var page rest.SandboxList
		if err := json.Unmarshal([]byte(s), &page); err != nil {
			return nil
		}
		list = page.Sandboxes
	}
	ids := make([]string, 0, len(list))
	for _, sb := range list {
		ids = append(ids, sb.ID)
	}
	return ids
}

func (in *instance) String() string { return fmt.Sprintf("den(%s)", in.url) }
