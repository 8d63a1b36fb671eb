package store

import (
	"testing"
	"time"

	"github.com/denhq/den/internal/errdefs"
)

func TestTimersStopWhileSuspended(t *testing.T) {
	tests := []struct {
		name        string
		timeout     int64
		expiresIn   time.Duration // at the suspend; 0: no expiry
		wantLeftMs  int64
		wantExpires time.Duration // after the resume; 0: none
	}{
		{"life left continues", 60, 40 * time.Second, 40_000, 40 * time.Second},
		{"timeout passed: a full one", 60, -5 * time.Second, 0, 60 * time.Second},
		{"no timeout", 0, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := &Sandbox{ID: "a", TimeoutSec: tt.timeout}
			if tt.expiresIn != 0 {
				sb.ExpiresAt = base.Add(tt.expiresIn)
			}
			sb.StopTimers(base)
			if sb.TimeoutLeftMs != tt.wantLeftMs || !sb.ExpiresAt.IsZero() || !sb.SuspendedAt.Equal(base) {
				t.Fatalf("after StopTimers: left %d ms, expires %v, suspended %v", sb.TimeoutLeftMs, sb.ExpiresAt, sb.SuspendedAt)
			}
			later := base.Add(24 * time.Hour)
			sb.RestartTimers(later)
			want := time.Time{}
			if tt.wantExpires != 0 {
				want = later.Add(tt.wantExpires)
			}
			if !sb.ExpiresAt.Equal(want) || sb.TimeoutLeftMs != 0 || !sb.SuspendedAt.IsZero() {
				t.Fatalf("after RestartTimers: expires %v (want %v), left %d, suspended %v", sb.ExpiresAt, want, sb.TimeoutLeftMs, sb.SuspendedAt)
			}
		})
	}
}

func TestSuspendFieldsRoundTrip(t *testing.T) {
	s := openTest(t)
	sb := newSandbox("sb-1", "acme", "", base)
	sb.TimeoutSec, sb.TimeoutAction, sb.IdleTimeoutSec, sb.IdleAction = 60, ActionSuspend, 10, ActionKill
	mustCreate(t, s, sb)
	sb.State = StateSuspended
	sb.Snapshot = &SnapshotRef{Generation: 2, Size: 1 << 20, Digest: "sha256:ab"}
	sb.StopTimers(base.Add(time.Minute))
	if err := s.UpdateSandbox(testCtx(t), sb); err != nil {
		t.Fatal(err)
	}
	got, err := s.Snapshot().Sandbox("sb-1")
	if err != nil {
		t.Fatal(err)
	}
	if *got.Snapshot != *sb.Snapshot || got.TimeoutAction != ActionSuspend || got.IdleTimeoutSec != 10 ||
		!got.SuspendedAt.Equal(base.Add(time.Minute)) {
		t.Fatalf("stored: %+v snapshot %+v", got, got.Snapshot)
	}
	c := got.Clone()
	c.Snapshot.Generation = 9
	if got.Snapshot.Generation != 2 {
		t.Fatal("Clone shares the snapshot reference")
	}
	bad := newSandbox("sb-2", "acme", "", base)
	bad.IdleAction = "pause"
	err = s.CreateSandbox(testCtx(t), bad)
	if errdefs.KindOf(err) != errdefs.InvalidArgument || err.Error() != `create sandbox: sandbox sb-2: unknown action "" or "pause"` {
		t.Fatalf("bad action: %v", err)
	}
}
