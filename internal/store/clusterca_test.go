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
	ca, err := restored(t, src).snapshot().ClusterCA()
	if err != nil || ca.CertPEM != "c" || ca.KeyPEM != "k" {
		t.Fatalf("restored CA: %+v, %v", ca, err)
	}
}

// TestRotateClusterCA walks a rotation through its phases: each step only
// from its phase and its generation, acknowledgements only of the
// current generation, and a snapshot keeps the rotation under way.
func TestRotateClusterCA(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if err := s.RotateClusterCA(ctx, CABegin, 0, []byte("cert-b"), []byte("key-b")); !errdefs.IsNotFound(err) {
		t.Fatalf("a rotation without a CA: %v, want NotFound", err)
	}
	if err := s.PutClusterCA(ctx, []byte("cert-a"), []byte("key-a")); err != nil {
		t.Fatal(err)
	}
	get := func() *ClusterCA {
		t.Helper()
		ca, err := s.Snapshot().ClusterCA()
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}
	for _, step := range []string{CAAdvance, CAFinish, CAAbort} {
		if err := s.RotateClusterCA(ctx, step, 0, nil, nil); !errdefs.Is(err, errdefs.FailedPrecondition) {
			t.Fatalf("step %s of a stable CA: %v, want FailedPrecondition", step, err)
		}
	}
	if err := s.RotateClusterCA(ctx, CABegin, 0, nil, nil); !errdefs.Is(err, errdefs.InvalidArgument) {
		t.Fatalf("a begin without the next CA: %v", err)
	}
	if err := s.RotateClusterCA(ctx, CABegin, 0, []byte("cert-b"), []byte("key-b")); err != nil {
		t.Fatal(err)
	}
	ca := get()
	if ca.Phase != CATrust || ca.Generation != 1 || ca.CertPEM != "cert-a" || ca.NextCertPEM != "cert-b" || ca.RotationStarted.IsZero() {
		t.Fatalf("after begin: %+v", ca)
	}
	// A second begin from the same generation lost the race.
	if err := s.RotateClusterCA(ctx, CABegin, 0, []byte("cert-c"), []byte("key-c")); !errdefs.Is(err, errdefs.Conflict) {
		t.Fatalf("a second begin: %v, want Conflict", err)
	}
	if err := s.AckClusterCA(ctx, "s1", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.AckClusterCA(ctx, "s2", 0); err != nil { // stale: ignored
		t.Fatal(err)
	}
	if ca := get(); len(ca.Acks) != 1 || ca.Acks["s1"] != 1 {
		t.Fatalf("acks: %v", ca.Acks)
	}
	if err := s.RotateClusterCA(ctx, CAAdvance, 1, nil, nil); err != nil {
		t.Fatal(err)
	}
	ca = get()
	if ca.Phase != CASign || ca.Generation != 2 || ca.CertPEM != "cert-b" || ca.KeyPEM != "key-b" || ca.PrevCertPEM != "cert-a" || ca.NextCertPEM != "" || len(ca.Acks) != 0 {
		t.Fatalf("after sign: %+v", ca)
	}
	// The rotation under way survives a snapshot and restore.
	src := newTestFSM(t)
	src.apply(t, cmdPutClusterCA, clusterCACmd{CA: &ClusterCA{CertPEM: "c", KeyPEM: "k"}})
	if res := src.apply(t, cmdRotateClusterCA, rotateCACmd{Step: CABegin, CertPEM: "n", KeyPEM: "nk"}); res.Err != nil {
		t.Fatal(res.Err)
	}
	src.apply(t, cmdRotateClusterCA, rotateCACmd{Ack: "s9", Generation: 1})
	if r, err := restored(t, src).snapshot().ClusterCA(); err != nil || r.Phase != CATrust || r.NextKeyPEM != "nk" || r.Acks["s9"] != 1 {
		t.Fatalf("restored rotation: %+v, %v", r, err)
	}

	if err := s.RotateClusterCA(ctx, CAFinish, 2, nil, nil); err != nil {
		t.Fatal(err)
	}
	ca = get()
	if ca.Phase != CAStable || ca.Generation != 3 || ca.CertPEM != "cert-b" || ca.PrevCertPEM != "" || ca.RotatedAt.IsZero() {
		t.Fatalf("after finish: %+v", ca)
	}
	// The CA now in the state is the one a restarting server must hold.
	if err := s.PutClusterCA(ctx, []byte("cert-b"), []byte("key-b")); err != nil {
		t.Fatalf("the rotated CA again: %v", err)
	}
	// An abort drops the next CA and keeps the current.
	if err := s.RotateClusterCA(ctx, CABegin, 3, []byte("cert-c"), []byte("key-c")); err != nil {
		t.Fatal(err)
	}
	if err := s.RotateClusterCA(ctx, CAAbort, 4, nil, nil); err != nil {
		t.Fatal(err)
	}
	if ca := get(); ca.Phase != CAStable || ca.CertPEM != "cert-b" || ca.NextCertPEM != "" || ca.Generation != 5 {
		t.Fatalf("after abort: %+v", ca)
	}
}

// restored is a new FSM restored from a snapshot of src.
func restored(t *testing.T, src *testFSM) *testFSM {
	t.Helper()
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
	return dst
}
