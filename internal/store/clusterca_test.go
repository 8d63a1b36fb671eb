package store

import (
	"context"
	"testing"

	"github.com/denhq/den/internal/errdefs"
)

func TestClusterCA(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, err := s.Snapshot().ClusterCA(); !errdefs.IsNotFound(err) {
		t.Fatalf("a new state holds a CA: %v", err)
	}
	if err := s.PutClusterCA(ctx, []byte("cert-a"), []byte("key-a")); err != nil {
		t.Fatal(err)
	}
	ca, err := s.Snapshot().ClusterCA()
	if err != nil || ca.CertPEM != "cert-a" || ca.KeyPEM != "key-a" {
		t.Fatalf("ClusterCA() = %+v, %v", ca, err)
	}
	// The same CA again (every server writes it at start) is no change.
	if err := s.PutClusterCA(ctx, []byte("cert-a"), []byte("key-a")); err != nil {
		t.Fatalf("the same CA again: %v", err)
	}
	// Another is refused and the first stays.
	err = s.PutClusterCA(ctx, []byte("cert-b"), []byte("key-b"))
	if !errdefs.Is(err, errdefs.FailedPrecondition) {
		t.Fatalf("another CA: %v, want FailedPrecondition", err)
	}
	if ca, _ := s.Snapshot().ClusterCA(); ca.CertPEM != "cert-a" {
		t.Fatalf("the CA changed to %q", ca.CertPEM)
	}
	if err := s.PutClusterCA(ctx, nil, []byte("key")); !errdefs.Is(err, errdefs.InvalidArgument) {
		t.Fatalf("a CA without a certificate: %v", err)
	}
}

func TestClusterCASnapshotRestore(t *testing.T) {
	src := newTestFSM(t)
	if res := src.apply(t, cmdPutClusterCA, clusterCACmd{CA: &ClusterCA{CertPEM: "c", KeyPEM: "k"}}); res.Err != nil {
		t.Fatal(res.Err)
	}
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
	ca, err := dst.snapshot().ClusterCA()
	if err != nil || ca.CertPEM != "c" || ca.KeyPEM != "k" {
		t.Fatalf("restored CA: %+v, %v", ca, err)
	}
}
