package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"

	pb "github.com/denhq/den/api/envd/process"
	"github.com/denhq/den/api/envd/process/processconnect"
	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
)

// get returns sandbox id as GET shows it.
func (e *testEnv) get(id string) rest.Sandbox {
	e.t.Helper()
	var sb rest.Sandbox
	e.doJSON("GET", "/v1/sandboxes/"+id, e.keyA, "", http.StatusOK, &sb)
	return sb
}

// state is sandbox id's stored state ("" when it is gone).
func (e *testEnv) state(id string) string {
	sb, err := e.store.Snapshot().Sandbox(id)
	if err != nil {
		return ""
	}
	return sb.State
}

// health sends GET envd/health through the proxy and returns the status.
func (e *testEnv) health(id string) int {
	e.t.Helper()
	status, _ := e.do("GET", "/v1/sandboxes/"+id+"/envd/health", e.keyA, "")
	return status
}

func TestSuspendResumeTimers(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"image":"busybox","name":"web","timeout":60}`)
	e.clock.Advance(20 * time.Second)

	var got rest.Sandbox
	e.doJSON("POST", "/v1/sandboxes/web/suspend", e.keyA, "", http.StatusOK, &got)
	want := sb
	want.State, want.ExpiresAt = "suspended", nil
	want.SuspendedAt, want.TimeoutLeft, want.SnapshotBytes = timePtr(t0.Add(20*time.Second)), 40, 4096
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("suspend answer (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(got, e.get(sb.ID)); diff != "" {
		t.Fatalf("GET of the suspended sandbox (-suspend +get):\n%s", diff)
	}

	e.clock.Advance(24 * time.Hour) // the timer does not run while suspended
	e.srv.reap(context.Background())
	if st := e.state(sb.ID); st != "suspended" {
		t.Fatalf("reaper touched a suspended sandbox: %s", st)
	}
	got = rest.Sandbox{}
	e.doJSON("POST", "/v1/sandboxes/"+sb.ID+"/resume", e.keyA, "", http.StatusOK, &got)
	want = sb
	want.ExpiresAt = timePtr(e.clock.Now().Add(40 * time.Second))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("resume answer (-want +got):\n%s", diff)
	}
	m := e.metricsText()
	for _, line := range []string{`den_sandbox_suspends_total{cause="api"} 1`, `den_sandbox_resumes_total{cause="api"} 1`} {
		if !strings.Contains(m, "\n"+line+"\n") {
			t.Errorf("metrics lack %s", line)
		}
	}
}

func TestSetTimeoutWhileSuspended(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	id := e.create(e.keyA, `{"image":"busybox","timeout":60}`).ID
	e.doJSON("POST", "/v1/sandboxes/"+id+"/suspend", e.keyA, "", http.StatusOK, nil)
	var got rest.Sandbox
	e.doJSON("POST", "/v1/sandboxes/"+id+"/timeout", e.keyA, `{"timeout":100}`, http.StatusOK, &got)
	if got.State != "suspended" || got.ExpiresAt != nil || got.TimeoutLeft != 100 || got.Timeout != 100 {
		t.Fatalf("timeout of a suspended sandbox: %+v", got)
	}
	e.clock.Advance(time.Hour)
	got = rest.Sandbox{}
	e.doJSON("POST", "/v1/sandboxes/"+id+"/resume", e.keyA, "", http.StatusOK, &got)
	if want := e.clock.Now().Add(100 * time.Second); got.ExpiresAt == nil || !got.ExpiresAt.Equal(want) {
		t.Fatalf("expires_at after resume = %v, want %v", got.ExpiresAt, want)
	}
}

func TestSuspendUnsupported(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	e.node.mu.Lock()
	e.node.noSuspend = true
	e.node.mu.Unlock()
	id := e.create(e.keyA, `{"image":"busybox"}`).ID
	tests := []struct {
		name, method, path, body string
		msg                      string
	}{
		{"suspend", "POST", "/v1/sandboxes/" + id + "/suspend", "", "runtime stub cannot suspend sandboxes"},
		{"create with timeout action suspend", "POST", "/v1/sandboxes", `{"image":"busybox","timeout_action":"suspend"}`,
			`runtime stub cannot suspend sandboxes: timeout_action and idle_action must be "kill"`},
		{"create with idle action suspend", "POST", "/v1/sandboxes", `{"image":"busybox","idle_timeout":5,"idle_action":"suspend"}`,
			`runtime stub cannot suspend sandboxes: timeout_action and idle_action must be "kill"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.do(tt.method, tt.path, e.keyA, tt.body)
			checkAPIError(t, status, body, http.StatusNotImplemented, rest.Error{Code: "unsupported", Message: tt.msg})
		})
	}
	if st := e.state(id); st != "running" {
		t.Fatalf("state after a refused suspend: %s", st)
	}
}

// TestAutoResumeIsSingleFlight sends many requests through the guest proxy
// to a suspended sandbox: they all wait for one resume and then succeed.
func TestAutoResumeIsSingleFlight(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	id := e.create(e.keyA, `{"image":"busybox"}`).ID
	e.doJSON("POST", "/v1/sandboxes/"+id+"/suspend", e.keyA, "", http.StatusOK, nil)
	gate := make(chan struct{})
	e.node.mu.Lock()
	e.node.resumeGate = gate
	e.node.mu.Unlock()

	const n = 8
	statuses := make(chan int, n)
	for range n {
		go func() { statuses <- e.health(id) }()
	}
	// All n are in: one resuming (held by the gate), n-1 joined to it.
	waitFor(t, "every request to join the resume", func() bool {
		e.srv.wakes.mu.Lock()
		defer e.srv.wakes.mu.Unlock()
		c := e.srv.wakes.m[id]
		return c != nil && c.joined == n-1
	})
	close(gate)
	for range n {
		if s := <-statuses; s != http.StatusNoContent {
			t.Errorf("request through the proxy: HTTP %d, want 204", s)
		}
	}
	if c := e.node.resumeCount(); c != 1 {
		t.Fatalf("%d resumes, want 1", c)
	}
	if st := e.state(id); st != "running" {
		t.Fatalf("state after the auto-resume: %s", st)
	}
	if m := e.metricsText(); !strings.Contains(m, "\n"+`den_sandbox_resumes_total{cause="auto"} 1`+"\n") {
		t.Errorf("metrics lack one auto resume")
	}
}

// TestAutoResumeRunsExec: an exec into a suspended sandbox resumes it and
// runs.
func TestAutoResumeRunsExec(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	id := e.create(e.keyA, `{"image":"busybox"}`).ID
	e.doJSON("POST", "/v1/sandboxes/"+id+"/suspend", e.keyA, "", http.StatusOK, nil)
	got := e.exec(testCtx(t), id, execScript)
	if diff := cmp.Diff(wantExec.Stdout, got.Stdout); diff != "" || got.End.GetExitCode() != 3 {
		t.Fatalf("exec in a suspended sandbox: %+v", got)
	}
}

func TestAutoResumeFailure(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	id := e.create(e.keyA, `{"image":"busybox"}`).ID
	e.doJSON("POST", "/v1/sandboxes/"+id+"/suspend", e.keyA, "", http.StatusOK, nil)
	e.node.mu.Lock()
	e.node.resumeErr = errdefs.New(errdefs.FailedPrecondition, "resume sandbox %s: snapshot 1 of sandbox %s is damaged: file \"mem\" is missing", id, id)
	e.node.mu.Unlock()
	status, body := e.do("GET", "/v1/sandboxes/"+id+"/envd/health", e.keyA, "")
	checkAPIError(t, status, body, http.StatusConflict, rest.Error{Code: "failed_precondition",
		Message: "resume sandbox " + id + ": snapshot 1 of sandbox " + id + " is damaged: file \"mem\" is missing"})
}

// exec runs script in sandbox id through the proxy (a stream) and
// returns what it delivered.
func (e *testEnv) exec(ctx context.Context, id, script string) execResult {
	e.t.Helper()
	client := processconnect.NewProcessClient(e.client, e.url+"/v1/sandboxes/"+id+"/envd", connect.WithInterceptors(apiKeyInterceptor(e.keyA)))
	stream, err := client.Start(ctx, connect.NewRequest(&pb.StartRequest{
		Process: &pb.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", script}},
	}))
	if err != nil {
		if ctx.Err() != nil { // the caller ended the stream before its headers came
			return execResult{}
		}
		e.t.Error(err) // may run on a goroutine of its own: no Fatal
		return execResult{}
	}
	defer stream.Close()
	var got execResult
	for stream.Receive() {
		got.add(stream.Msg().GetEvent())
	}
	if err := stream.Err(); err != nil && !errors.Is(err, context.Canceled) && connect.CodeOf(err) != connect.CodeCanceled {
		e.t.Errorf("stream: %v", err)
	}
	return got
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	ctx := context.Background()
	sb := e.create(e.keyA, `{"image":"busybox","timeout":0,"idle_timeout":10,"idle_action":"suspend"}`)

	e.clock.Advance(9 * time.Second)
	e.srv.reap(ctx)
	if st := e.state(sb.ID); st != "running" {
		t.Fatalf("after 9 s idle: %s", st)
	}
	if s := e.health(sb.ID); s != http.StatusNoContent { // activity at t0+9s
		t.Fatalf("health: %d", s)
	}
	e.clock.Advance(9 * time.Second)
	e.srv.reap(ctx)
	if st := e.state(sb.ID); st != "running" {
		t.Fatalf("9 s after a request: %s", st)
	}
	got := e.get(sb.ID) // reading the record is not activity
	if want := t0.Add(9 * time.Second); got.LastActiveAt == nil || !got.LastActiveAt.Equal(want) ||
		!got.IdleExpiresAt.Equal(want.Add(10*time.Second)) {
		t.Fatalf("GET: last_active_at %v idle_expires_at %v, want %v and 10 s later", got.LastActiveAt, got.IdleExpiresAt, want)
	}
	e.clock.Advance(time.Second)
	e.srv.reap(ctx)
	if st := e.state(sb.ID); st != "suspended" {
		t.Fatalf("10 s after the last request: %s", st)
	}
	if m := e.metricsText(); !strings.Contains(m, "\n"+`den_sandbox_suspends_total{cause="idle"} 1`+"\n") {
		t.Errorf("metrics lack one idle suspend")
	}

	// The next request wakes it, and the idle clock starts again.
	if s := e.health(sb.ID); s != http.StatusNoContent {
		t.Fatalf("health of the suspended sandbox: %d", s)
	}
	e.clock.Advance(9 * time.Second)
	e.srv.reap(ctx)
	if st := e.state(sb.ID); st != "running" {
		t.Fatalf("9 s after the auto-resume: %s", st)
	}
}

// TestIdleTimeoutWaitsForOpenStreams: an open exec stream keeps a sandbox
// active however long it lasts; once it ends, the idle clock runs.
func TestIdleTimeoutWaitsForOpenStreams(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	bg := context.Background()
	sb := e.create(e.keyA, `{"image":"busybox","timeout":0,"idle_timeout":10}`)
	ctx, cancel := context.WithCancel(testCtx(t))
	var wg sync.WaitGroup
	wg.Go(func() { e.exec(ctx, sb.ID, "echo started; exec sleep 60") })
	waitFor(t, "the stream to open", func() bool { _, active, _ := e.srv.activity.peek(sb.ID); return active })

	e.clock.Advance(time.Hour)
	e.srv.reap(bg)
	if st := e.state(sb.ID); st != "running" {
		t.Fatalf("with a stream open for an hour: %s", st)
	}
	if got := e.get(sb.ID); !got.LastActiveAt.Equal(e.clock.Now()) {
		t.Fatalf("last_active_at with a stream open = %v, want now (%v)", got.LastActiveAt, e.clock.Now())
	}
	cancel()
	wg.Wait()
	waitFor(t, "the stream to close", func() bool { _, active, _ := e.srv.activity.peek(sb.ID); return !active })
	e.clock.Advance(10 * time.Second)
	e.srv.reap(bg)
	if st := e.state(sb.ID); st != "" {
		t.Fatalf("10 s after the stream closed: %s, want removed (idle action kill)", st)
	}
	if m := e.metricsText(); !strings.Contains(m, "\nden_sandbox_idle_kills_total 1\n") {
		t.Errorf("metrics lack one idle kill")
	}
}

func TestTimeoutActionSuspend(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"image":"busybox","timeout":60,"timeout_action":"suspend"}`)
	e.clock.Advance(60 * time.Second)
	e.srv.reap(context.Background())
	got := e.get(sb.ID)
	if got.State != "suspended" || got.TimeoutLeft != 60 || got.ExpiresAt != nil {
		t.Fatalf("after the timeout: %s, timeout_left %d, expires_at %v", got.State, got.TimeoutLeft, got.ExpiresAt)
	}
	// A resume after the timeout passed starts a full one.
	got = rest.Sandbox{}
	e.doJSON("POST", "/v1/sandboxes/"+sb.ID+"/resume", e.keyA, "", http.StatusOK, &got)
	if want := e.clock.Now().Add(60 * time.Second); !got.ExpiresAt.Equal(want) {
		t.Fatalf("expires_at after resume = %v, want %v", got.ExpiresAt, want)
	}
}

// TestReaperRetriesFailedSuspendLater: a suspend that fails is not tried
// again on every pass.
func TestReaperRetriesFailedSuspendLater(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"image":"busybox","timeout":60,"timeout_action":"suspend"}`)
	e.node.mu.Lock()
	e.node.suspendErr = errors.New("disk full")
	e.node.mu.Unlock()
	e.clock.Advance(60 * time.Second)
	e.srv.reap(context.Background())
	if e.srv.activity.due(sb.ID, e.clock.Now()) || !e.srv.activity.due(sb.ID, e.clock.Now().Add(reapRetry)) {
		t.Fatal("a failed suspend is not retried after reapRetry")
	}
	e.node.mu.Lock()
	e.node.suspendErr = nil
	e.node.mu.Unlock()
	e.clock.Advance(reapRetry)
	e.srv.reap(context.Background())
	if st := e.state(sb.ID); st != "suspended" {
		t.Fatalf("after the retry: %s", st)
	}
}
