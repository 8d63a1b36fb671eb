package daemon

import (
	"context"
	"strings"
	"testing"

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
