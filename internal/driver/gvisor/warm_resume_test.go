package gvisor

import (
	"context"
	"testing"
)

// TestWarmClaimSuspendResume: a sandbox claimed from the warm pool with its
// own user, env and hostname (applied through the guest agent, the spare
// booted without them) suspends and resumes: runsc restore needs the
// process of the bundle it booted with, not one built from the spec.
func TestWarmClaimSuspendResume(t *testing.T) {
	d, spec := newWarmDriver(t)
	warmUp(t, d, spec, 1)
	claimed := spec
	claimed.User = "user"
	claimed.Env = map[string]string{"DEN_CLAIM_VAR": "from spec"}
	claimed.Hostname = "den-warm"
	createT(t, d, claimed)
	if n := d.claims.Load(); n != 1 {
		t.Fatalf("claims = %d after a Create with a ready spare, want 1", n)
	}
	const probe = `echo "$DEN_CLAIM_VAR"; hostname; id -un`
	before := shell(t, d, claimed.ID, probe)
	ctx := context.Background()
	for i := range 2 { // the second cycle resumes from a resumed bundle
		dir := newCheckpointDir(t)
		if err := d.Suspend(ctx, claimed.ID, dir); err != nil {
			t.Fatalf("cycle %d: Suspend: %v", i, err)
		}
		if _, err := d.Resume(ctx, claimed, dir); err != nil {
			t.Fatalf("cycle %d: Resume of a claimed sandbox: %v", i, err)
		}
		if got := shell(t, d, claimed.ID, probe); got != before {
			t.Errorf("cycle %d: after resume %q, before suspend %q", i, got, before)
		}
	}
}

// TestWarmClaimCheckpointClone: a checkpoint of a claimed sandbox clones
// (fork): the clone runs with the claimed user and env, its own hostname.
func TestWarmClaimCheckpointClone(t *testing.T) {
	d, spec := newWarmDriver(t)
	warmUp(t, d, spec, 1)
	claimed := spec
	claimed.User = "user"
	claimed.Env = map[string]string{"DEN_CLAIM_VAR": "from spec"}
	claimed.Hostname = "den-warm"
	createT(t, d, claimed)
	ctx := context.Background()
	dir := newCheckpointDir(t)
	if err := d.Checkpoint(ctx, claimed.ID, dir); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	clone := claimed
	clone.ID, clone.Hostname = claimed.ID+"c", "den-clone"
	if _, err := d.Clone(ctx, clone, dir); err != nil {
		t.Fatalf("Clone of a claimed sandbox's checkpoint: %v", err)
	}
	t.Cleanup(func() { _ = d.Destroy(context.Background(), clone.ID) })
	const probe = `echo "$DEN_CLAIM_VAR"; hostname; id -un`
	if got, want := shell(t, d, clone.ID, probe), "from spec\nden-clone\nuser\n"; got != want {
		t.Errorf("clone: %q, want %q", got, want)
	}
}
