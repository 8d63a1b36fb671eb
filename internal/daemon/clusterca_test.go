package daemon

import (
	"context"
	"crypto/x509"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/pki"
	"github.com/denhq/den/internal/store"
)

// The first server records its CA in the state; a server of the same CA
// starts; one given another cluster's CA is refused, naming both hashes.
func TestRecordClusterCA(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir(), NodeID: "srv"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ca, _ := pki.NewCA("test")
	if err := recordClusterCA(ctx, st, ca); err != nil {
		t.Fatal(err)
	}
	rec, err := st.Snapshot().ClusterCA()
	if err != nil {
		t.Fatal(err)
	}
	got, err := pki.ParseCA([]byte(rec.CertPEM), []byte(rec.KeyPEM))
	if err != nil || got.Hash() != ca.Hash() {
		t.Fatalf("the state's CA: %v, hash %v, want %s", err, got, ca.Hash())
	}
	if err := recordClusterCA(ctx, st, ca); err != nil {
		t.Fatalf("the same CA at the next start: %v", err)
	}
	other, _ := pki.NewCA("other")
	err = recordClusterCA(ctx, st, other)
	if !errdefs.Is(err, errdefs.FailedPrecondition) || !strings.Contains(err.Error(), other.Hash()) || !strings.Contains(err.Error(), ca.Hash()) {
		t.Fatalf("another CA: %v", err)
	}
}

// A running server replaces its certificate when it needs renewing, and
// TLS configurations built on its holder present the new one.
func TestServerCertRenewal(t *testing.T) {
	ca, _ := pki.NewCA("test")
	r := &serverRun{cfg: ServerConfig{ID: "s1"}, ca: ca, auth: pki.NewAuthority(ca), hosts: []string{"127.0.0.1"}, log: slog.New(slog.DiscardHandler)}
	first, err := r.issue()
	if err != nil {
		t.Fatal(err)
	}
	r.certs = pki.NewHolder(first)
	old, _ := r.certs.Leaf()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.renewCert(ctx, 5*time.Millisecond, func(*x509.Certificate, time.Time) bool { return true })
	}()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		cur, err := r.certs.Leaf()
		if err == nil && cur.SerialNumber.Cmp(old.SerialNumber) != 0 {
			got, err := ca.ServerConfigOf(r.certs, pki.RoleServer).GetCertificate(nil)
			if err != nil || got != r.certs.Get() {
				t.Fatalf("the server TLS configuration presents another certificate: %v", err)
			}
			if id, err := pki.IdentityOf(cur); err != nil || id.Role != pki.RoleServer || id.ID != "s1" {
				t.Fatalf("renewed certificate identity %+v, %v", id, err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the certificate was not renewed")
		}
	}
}

// A server follows a rotation of the cluster CA through the state: at each
// step it trusts what the state trusts, keeps it in its CA directory, signs
// its own certificate with the new CA once that signs, and acknowledges
// the step. A CA directory a rotation under way still trusts is accepted
// at start; after the rotation it is refused, with the way out.
func TestSyncCAFollowsRotation(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir(), NodeID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, _ := pki.NewCA("a")
	b, _ := pki.NewCA("b")
	if err := recordClusterCA(ctx, st, a); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := a.Save(dir); err != nil { // as the first server's start does
		t.Fatal(err)
	}
	r := &serverRun{cfg: ServerConfig{ID: "s1", CADir: dir}, ca: a, auth: pki.NewAuthority(a), hosts: []string{"127.0.0.1"},
		st: st, log: slog.New(slog.DiscardHandler)}
	first, err := r.issue()
	if err != nil {
		t.Fatal(err)
	}
	r.certs = pki.NewHolder(first)
	check := func(step string, gen uint64, signer *pki.CA, trusted ...*pki.CA) {
		t.Helper()
		if err := r.syncCA(ctx); err != nil {
			t.Fatalf("%s: sync: %v", step, err)
		}
		want := []*x509.Certificate{signer.Cert}
		for _, c := range trusted {
			want = append(want, c.Cert)
		}
		if r.auth.Signer().Hash() != signer.Hash() || r.auth.TrustHash() != pki.BundleHash(want) {
			t.Fatalf("%s: signs with %s and trusts %d CAs", step, r.auth.Signer().Hash(), len(r.auth.Trusted()))
		}
		leaf, _ := r.certs.Leaf()
		if leaf.CheckSignatureFrom(signer.Cert) != nil {
			t.Fatalf("%s: this server's certificate is not of the signing CA", step)
		}
		saved, err := pki.LoadCA(dir)
		if err != nil || saved.Hash() != signer.Hash() {
			t.Fatalf("%s: the CA directory holds %v, %v", step, saved, err)
		}
		also, err := pki.LoadTrusted(dir)
		if err != nil || len(also) != len(trusted) || len(also) == 1 && pki.CertHash(also[0]) != trusted[0].Hash() {
			t.Fatalf("%s: the CA directory trusts %d more CAs (%v), want %d", step, len(also), err, len(trusted))
		}
		rec, _ := st.Snapshot().ClusterCA()
		if rec.Generation != gen || gen > 0 && rec.Acks["s1"] != gen {
			t.Fatalf("%s: generation %d, acknowledged %v", step, rec.Generation, rec.Acks)
		}
	}
	check("stable", 0, a)
	if err := st.RotateClusterCA(ctx, store.CABegin, 0, b.CertPEM, b.KeyPEM); err != nil {
		t.Fatal(err)
	}
	check("trust", 1, a, b)
	if err := st.RotateClusterCA(ctx, store.CAAdvance, 1, nil, nil); err != nil {
		t.Fatal(err)
	}
	check("sign", 2, b, a)
	if err := recordClusterCA(ctx, st, a); err != nil {
		t.Fatalf("a restart with the previous CA while it is still trusted: %v", err)
	}
	if err := st.RotateClusterCA(ctx, store.CAFinish, 2, nil, nil); err != nil {
		t.Fatal(err)
	}
	check("finish", 3, b)
	if err := recordClusterCA(ctx, st, a); !errdefs.Is(err, errdefs.FailedPrecondition) || !strings.Contains(err.Error(), "den token create --server") {
		t.Fatalf("a restart with a CA rotated away: %v", err)
	}
}
