package store

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/internal/errdefs"
)

func newSSHKeyRec(id, tenant, name, fp string, created time.Time) *SSHKey {
	return &SSHKey{ID: id, Tenant: tenant, Name: name, PublicKey: "ssh-ed25519 AAAA " + name, Fingerprint: fp, CreatedAt: created}
}

func TestSSHKeys(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	for i, rec := range []*SSHKey{
		newSSHKeyRec("k1", "acme", "laptop", "SHA256:a", base),
		newSSHKeyRec("k2", "acme", "ci", "SHA256:b", base.Add(time.Second)),
		newSSHKeyRec("k3", "globex", "laptop", "SHA256:a", base.Add(2*time.Second)), // one key, two tenants
	} {
		if err := s.PutSSHKey(ctx, rec); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		if rec.ModifyIndex == 0 {
			t.Fatalf("put %d: no ModifyIndex", i)
		}
	}
	tests := []struct {
		name string
		rec  *SSHKey
		kind errdefs.Kind
		msg  string
	}{
		{"name taken", newSSHKeyRec("k4", "acme", "laptop", "SHA256:c", base), errdefs.AlreadyExists, `ssh key name "laptop" is taken by ssh key k1`},
		{"key registered", newSSHKeyRec("k5", "acme", "other", "SHA256:b", base), errdefs.AlreadyExists, "ssh key SHA256:b is already registered as k2"},
		{"no tenant", newSSHKeyRec("k6", "", "x", "SHA256:d", base), errdefs.InvalidArgument, "put ssh key: ssh key k6: tenant is required"},
		{"no fingerprint", newSSHKeyRec("k7", "acme", "y", "", base), errdefs.InvalidArgument, "put ssh key: ssh key k7: public key and fingerprint are required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.PutSSHKey(ctx, tt.rec)
			if errdefs.KindOf(err) != tt.kind || err.Error() != tt.msg {
				t.Fatalf("got %v (%s), want %s %q", err, errdefs.KindOf(err), tt.kind, tt.msg)
			}
		})
	}
	snap := s.Snapshot()
	if got, err := snap.SSHKeyByName("globex", "laptop"); err != nil || got.ID != "k3" {
		t.Fatalf("globex's key laptop: %+v, %v", got, err)
	}
	list, err := snap.SSHKeys("acme")
	if err != nil || len(list) != 2 || list[0].ID != "k1" || list[1].ID != "k2" {
		t.Fatalf("acme's keys: %v, %v", list, err)
	}
	byFP, err := snap.SSHKeysByFingerprint("SHA256:a")
	if err != nil || len(byFP) != 2 {
		t.Fatalf("keys of SHA256:a: %v, %v", byFP, err)
	}
	if err := s.DeleteSSHKey(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshot().SSHKey("k1"); !errdefs.IsNotFound(err) || err.Error() != "ssh key k1 not found" {
		t.Fatalf("deleted key: %v", err)
	}
	if err := s.DeleteSSHKey(ctx, "k1"); !errdefs.IsNotFound(err) {
		t.Fatalf("delete deleted key: %v", err)
	}
	if got, _ := s.Snapshot().SSHKeysByFingerprint("SHA256:a"); len(got) != 1 || got[0].Tenant != "globex" {
		t.Fatalf("keys of SHA256:a after delete: %v", got)
	}
}

func TestSSHKeysSnapshotRestore(t *testing.T) {
	src := newTestFSM(t)
	src.apply(t, cmdPutSSHKey, sshKeyCmd{Key: newSSHKeyRec("k1", "acme", "laptop", "SHA256:a", base)})
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	dst := newTestFSM(t)
	if err := dst.Restore(readCloser{&sink}); err != nil {
		t.Fatal(err)
	}
	want, _ := src.snapshot().SSHKeys("")
	got, _ := dst.snapshot().SSHKeys("")
	if d := cmp.Diff(want, got); d != "" || len(got) != 1 {
		t.Fatalf("restored ssh keys (-want +got):\n%s", d)
	}
	if fp, _ := dst.snapshot().SSHKeysByFingerprint("SHA256:a"); len(fp) != 1 {
		t.Fatalf("fingerprint index after restore: %v", fp)
	}
}

func TestDeleteTenantSSHKeys(t *testing.T) {
	f := newTestFSM(t)
	f.apply(t, cmdPutSSHKey, sshKeyCmd{Key: newSSHKeyRec("k1", "acme", "a", "SHA256:a", base)})
	f.apply(t, cmdPutSSHKey, sshKeyCmd{Key: newSSHKeyRec("k2", "acme", "b", "SHA256:b", base.Add(time.Second))})
	f.apply(t, cmdPutSSHKey, sshKeyCmd{Key: newSSHKeyRec("k3", "globex", "a", "SHA256:a", base)})
	txn := f.db.Txn(true)
	if err := deleteTenantSSHKeys(txn, "acme"); err != nil {
		t.Fatal(err)
	}
	txn.Commit()
	left, _ := f.snapshot().SSHKeys("")
	if len(left) != 1 || left[0].ID != "k3" {
		t.Fatalf("keys after deleting acme's: %v", left)
	}
}
