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
	r := &serverRun{cfg: ServerConfig{ID: "s1"}, ca: ca, hosts: []string{"127.0.0.1"}, log: slog.New(slog.DiscardHandler)}
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
