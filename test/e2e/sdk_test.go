package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/denhq/den/api/rest"
	den "github.com/denhq/den/sdk/go"
)

// syncBuffer is a bytes.Buffer safe for a writer and a poller.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (in *instance) client(t *testing.T) *den.Client {
	t.Helper()
	c, err := den.NewClient(den.WithURL(in.url), den.WithAPIKey(in.key))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTaggedProcessReattachAndKillTree starts a tagged background process
// from one client, re-attaches to it by tag from a second client and sees
// its output continue, then kills it and checks its children died too.
func TestTaggedProcessReattachAndKillTree(t *testing.T) {
	in := startDen(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	first := in.client(t)
	sb, err := first.Create(ctx, rest.CreateSandboxRequest{Image: testImage})
	if err != nil {
		t.Fatal(err)
	}
	script := `sleep 1000 & echo $! > /tmp/child; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.05; done`
	startCtx, stopFirst := context.WithCancel(ctx)
	var firstOut syncBuffer
	go sb.Exec(startCtx, den.ExecOptions{Cmd: "sh", Args: []string{"-c", script}, Tag: "ticker", Stdout: &firstOut})
	waitFor(t, firstOut.String, "tick 3", 30*time.Second)
	stopFirst() // the first client goes away; the process keeps running

	second := in.client(t).Sandbox(sb.ID)
	var secondOut syncBuffer
	attached := make(chan den.ExitStatus, 1)
	go func() {
		st, _ := second.Connect(ctx, den.Selector{Tag: "ticker"}, &secondOut, nil)
		attached <- st
	}()
	waitFor(t, secondOut.String, "tick", 30*time.Second)
	before := lastTick(secondOut.String())
	waitFor(t, func() string {
		if lastTick(secondOut.String()) > before+2 {
			return "advanced"
		}
		return ""
	}, "advanced", 30*time.Second)

	child := strings.TrimSpace(runOK(t, ctx, second, "cat /tmp/child"))
	if err := second.Signal(ctx, den.Selector{Tag: "ticker"}, den.SIGKILL); err != nil {
		t.Fatalf("kill by tag: %v", err)
	}
	select {
	case st := <-attached:
		if st.Exited && st.Code == 0 {
			t.Fatalf("killed process reported a clean exit: %+v", st)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the re-attached client never saw the process end")
	}
	alive := runOK(t, ctx, second, "kill -0 "+child+" 2>/dev/null && echo alive || echo gone")
	if strings.TrimSpace(alive) != "gone" {
		t.Fatalf("child %s of the killed process survived: %q", child, alive)
	}
}

func lastTick(s string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		var v int
		if _, err := fmt.Sscanf(l, "tick %d", &v); err == nil {
			n = v
		}
	}
	return n
}

func runOK(t *testing.T, ctx context.Context, sb *den.Sandbox, cmd string) string {
	t.Helper()
	res, err := sb.Run(ctx, cmd)
	if err != nil || res.Code != 0 {
		t.Fatalf("%q: %v %+v", cmd, err, res)
	}
	return string(res.Stdout)
}

// TestUploadPastDiskQuota checks that writing more than disk_mb answers 507
// insufficient_storage, and the CLI says so.
func TestUploadPastDiskQuota(t *testing.T) {
	in := startDen(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := in.client(t)
	sb, err := c.Create(ctx, rest.CreateSandboxRequest{Image: testImage, DiskMB: 64})
	if err != nil {
		t.Fatal(err)
	}
	err = sb.WriteFile(ctx, "/tmp/big.bin", io.LimitReader(zeros{}, 128<<20))
	var apiErr *den.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 507 || apiErr.Code != "insufficient_storage" {
		t.Fatalf("upload of 128 MiB into a 64 MiB disk: %v, want 507 insufficient_storage", err)
	}
	if res, err := sb.Run(ctx, "echo still-alive"); err != nil || string(res.Stdout) != "still-alive\n" {
		t.Fatalf("sandbox after a failed upload: %v %+v", err, res)
	}
	src, _ := randomFile(t, 96<<20)
	cli := in.den(nil, "cp", src, sb.ID+":/tmp/big2.bin")
	if cli.code == 0 || !strings.Contains(cli.stderr, "insufficient_storage") {
		t.Fatalf("den cp past the quota: code=%d stderr=%q", cli.code, cli.stderr)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
