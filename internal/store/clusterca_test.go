package store

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

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

// A server token admits servers only, counts a use per server key (a
// retry of the same key is free) and stops at its uses; an agent token
// admits no server.
func TestJoinServer(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if err := s.PutJoinToken(ctx, &JoinToken{ID: "srv", Hash: "h", Uses: 1, Role: RoleServer, CreatedAt: base}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutJoinToken(ctx, &JoinToken{ID: "agent", Hash: "h", Uses: 5, CreatedAt: base}); err != nil {
		t.Fatal(err)
	}
	if err := s.JoinServer(ctx, "srv", "h", base, "key-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.JoinServer(ctx, "srv", "h", base, "key-1"); err != nil {
		t.Fatalf("the same server again: %v", err)
	}
	if tok, _ := s.Snapshot().JoinToken("srv"); tok.Used != 1 || len(tok.Servers) != 1 {
		t.Fatalf("token after a join and its retry: %+v", tok)
	}
	err := s.JoinServer(ctx, "srv", "h", base, "key-2")
	if !errdefs.Is(err, errdefs.PermissionDenied) || !strings.Contains(err.Error(), "used up") {
		t.Fatalf("a second server on a one-use token: %v", err)
	}
	if err := s.JoinServer(ctx, "srv", "wrong", base, "key-3"); !errdefs.Is(err, errdefs.PermissionDenied) {
		t.Fatalf("a wrong secret: %v", err)
	}
	if err := s.JoinServer(ctx, "agent", "h", base, "key-4"); !errdefs.Is(err, errdefs.PermissionDenied) {
		t.Fatalf("an agent token admitted a server: %v", err)
	}
	if err := s.PutJoinToken(ctx, &JoinToken{ID: "srv2", Hash: "h", Uses: 1, Role: RoleServer, CreatedAt: base}); err != nil {
		t.Fatal(err)
	}
	err = s.JoinNode(ctx, "srv2", "h", base, &Node{ID: "n-1", Name: "box"})
	if !errdefs.Is(err, errdefs.PermissionDenied) || !strings.Contains(err.Error(), "admits servers") {
		t.Fatalf("a server token admitted an agent: %v", err)
	}
	if err := s.PutJoinToken(ctx, &JoinToken{ID: "bad", Hash: "h", Uses: 1, Role: "root", CreatedAt: base}); !errdefs.Is(err, errdefs.InvalidArgument) {
		t.Fatalf("a token of an unknown role: %v", err)
	}
}

// EachSandbox visits every sandbox of a state once, and stops when told.
func TestEachSandbox(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	for i, st := range []string{StatePending, "running", "running", "suspended", "running"} {
		sb := newSandbox(string(rune('a'+i)), "t", "", base.Add(time.Duration(i)*time.Second))
		sb.State = st
		if err := s.CreateSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
	}
	var running []string
	if err := s.Snapshot().EachSandbox("running", func(sb *Sandbox) bool { running = append(running, sb.ID); return true }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(running)
	if !slices.Equal(running, []string{"b", "c", "e"}) {
		t.Fatalf("running sandboxes %v, want b c e", running)
	}
	n := 0
	s.Snapshot().EachSandbox("", func(*Sandbox) bool { n++; return n < 2 })
	if n != 2 {
		t.Fatalf("visited %d after asking to stop at 2", n)
	}
}
