package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/api/rest"
)

// getSandbox is `den get ID --json`: a read, which does not count as
// activity for the idle timeout.
func (in *instance) getSandbox(id string) rest.Sandbox {
	in.t.Helper()
	var sb rest.Sandbox
	out := in.mustDen("get", id, "--json")
	if err := json.Unmarshal([]byte(out), &sb); err != nil {
		in.t.Fatalf("den get --json: %v\n%s", err, out)
	}
	return sb
}

// TestIdleSuspend: a sandbox created with --idle-timeout 10s --idle-action
// suspend is suspended once it has been idle that long (reads do not keep
// it awake), and a plain exec resumes it.
func TestIdleSuspend(t *testing.T) {
	in := startDen(t, "")
	id := in.create("--timeout", "3600", "--idle-timeout", "10s", "--idle-action", "suspend")
	if got := strings.TrimSpace(in.mustDen("exec", id, "--", "echo", "hi")); got != "hi" {
		t.Fatalf("den exec printed %q, want hi", got)
	}
	lastExec := time.Now()

	sb := in.getSandbox(id)
	if sb.IdleTimeout != 10 || sb.IdleAction != rest.ActionSuspend {
		t.Fatalf("idle_timeout=%d idle_action=%q, want 10 and suspend", sb.IdleTimeout, sb.IdleAction)
	}
	if sb.LastActiveAt == nil || sb.IdleExpiresAt == nil {
		t.Fatalf("a running sandbox with an idle timeout shows no last_active_at/idle_expires_at: %+v", sb)
	}
	lastActive := *sb.LastActiveAt

	// Poll with reads only, well past the idle timeout; 60 s is a generous
	// bound, not a timing assertion.
	deadline := time.Now().Add(60 * time.Second)
	for sb.State != rest.StateSuspended {
		if time.Now().After(deadline) {
			t.Fatalf("not suspended 60 s after the last activity; state %s, last_active_at %s, idle_expires_at %v\nden log:\n%s",
				sb.State, lastActive.Format(time.RFC3339Nano), sb.IdleExpiresAt, tail(in.log.String(), 3000))
		}
		if sb.State != rest.StateRunning && sb.State != rest.StateSuspending {
			t.Fatalf("state %s while waiting for the idle suspend: %+v", sb.State, sb)
		}
		time.Sleep(200 * time.Millisecond)
		sb = in.getSandbox(id)
	}
	seen := time.Now()
	suspendedAt := "?"
	if sb.SuspendedAt != nil {
		suspendedAt = sb.SuspendedAt.Sub(lastActive).Round(time.Millisecond).String()
	}
	t.Logf("idle suspend: suspended_at is %s after last_active_at; seen suspended %s after the last exec returned",
		suspendedAt, seen.Sub(lastExec).Round(time.Millisecond))

	// A plain exec resumes it.
	if got := strings.TrimSpace(in.mustDen("exec", id, "--", "echo", "ok")); got != "ok" {
		t.Fatalf("den exec after the idle suspend printed %q, want ok", got)
	}
	if sb = in.getSandbox(id); sb.State != rest.StateRunning {
		t.Fatalf("state after the exec that resumed it: %s, want running", sb.State)
	}
	t.Logf("resumed by exec %s after it was seen suspended", time.Since(seen).Round(time.Millisecond))
}
