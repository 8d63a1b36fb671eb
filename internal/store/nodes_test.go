package store

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/internal/errdefs"
)

func putToken(t *testing.T, s *Store, tok *JoinToken) {
	t.Helper()
	if err := s.PutJoinToken(context.Background(), tok); err != nil {
		t.Fatalf("put token %s: %v", tok.ID, err)
	}
}

func TestJoinTokenUses(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	putToken(t, s, &JoinToken{ID: "t1", Hash: "h1", Uses: 2, Pool: "gpu", Labels: map[string]string{"zone": "a"}, CreatedAt: base, ExpiresAt: base.Add(time.Hour)})
	now := base.Add(time.Minute)
	for _, tt := range []struct {
		name, token, hash, id, pool string
		now                         time.Time
		kind                        errdefs.Kind
		msg                         string
	}{
		{"wrong secret", "t1", "nope", "n0", "", now, errdefs.PermissionDenied, "join token t1 is not valid"},
		{"unknown token", "t9", "h1", "n0", "", now, errdefs.PermissionDenied, "join token t9 is not valid"},
		{"expired", "t1", "h1", "n0", "", base.Add(time.Hour), errdefs.PermissionDenied, "join token t1 expired at"},
		{"other pool", "t1", "h1", "n0", "shared", now, errdefs.PermissionDenied, `admits nodes to pool "gpu", not "shared"`},
		{"first", "t1", "h1", "n1", "", now, 0, ""},
		{"second", "t1", "h1", "n2", "gpu", now, 0, ""},
		{"third", "t1", "h1", "n3", "", now, errdefs.PermissionDenied, "join token t1 is used up (2 of 2 joins)"},
		{"same id", "t1", "h1", "n1", "", now, errdefs.AlreadyExists, "node n1 already exists"},
		{"same id, wrong secret", "t1", "nope", "n1", "", now, errdefs.PermissionDenied, "join token t1 is not valid"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := &Node{ID: tt.id, Name: tt.id, Pool: tt.pool, Labels: map[string]string{"zone": "b", "disk": "ssd"}}
			err := s.JoinNode(ctx, tt.token, tt.hash, tt.now, n)
			if tt.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				n = mustNode(t, s, tt.id)
				want := map[string]string{"zone": "a", "disk": "ssd"}
				if n.Pool != "gpu" || n.State != NodeDown || n.Token != "t1" || !cmp.Equal(n.Labels, want) {
					t.Fatalf("joined node: %+v", n)
				}
				return
			}
			if errdefs.KindOf(err) != tt.kind || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("join: %v, want %v %q", err, tt.kind, tt.msg)
			}
		})
	}
	tok, err := s.Snapshot().JoinToken("t1")
	if err != nil || tok.Used != 2 {
		t.Fatalf("token after joins: %+v, %v", tok, err)
	}
}

// A one-use token admits exactly one of many racing joins.
func TestJoinTokenRace(t *testing.T) {
	s := openTest(t)
	putToken(t, s, &JoinToken{ID: "once", Hash: "h", Uses: 1})
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.JoinNode(context.Background(), "once", "h", time.Now(), &Node{ID: "n" + string(rune('a'+i))})
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !strings.Contains(err.Error(), "is used up"):
			t.Errorf("losing join: %v", err)
		}
	}
	nodes, _ := s.Snapshot().Nodes()
	if won != 1 || len(nodes) != 1 {
		t.Fatalf("%d joins won, %d nodes recorded; want 1 and 1", won, len(nodes))
	}
}

func TestNodeUpDownEpochs(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	putToken(t, s, &JoinToken{ID: "t", Hash: "h", Uses: 1})
	if err := s.JoinNode(ctx, "t", "h", base, &Node{ID: "n1"}); err != nil {
		t.Fatal(err)
	}
	for _, sb := range []*Sandbox{
		{ID: "s1", Tenant: "acme", Node: "n1", State: StateRunning, CreatedAt: base},
		{ID: "s2", Tenant: "acme", Node: "n1", State: StateTerminated, CreatedAt: base},
		{ID: "s3", Tenant: "acme", Node: "other", State: StateRunning, CreatedAt: base},
	} {
		if err := s.CreateSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
	}
	before := s.Snapshot()
	e1, err := s.NodeUp(ctx, "n1", "srv-a", base, NodeHello{Capacity: NodeCapacity{CPUs: 16, MemoryMB: 65536}, Runtimes: []string{"gvisor"}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-before.NodesChanged():
	default:
		t.Fatal("NodesChanged of a snapshot before NodeUp is still open")
	}
	if ch := s.Snapshot().NodesChanged(); func() bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}() {
		t.Fatal("NodesChanged of a fresh snapshot is closed")
	}
	// The node reconnects to another server before the first one notices.
	e2, err := s.NodeUp(ctx, "n1", "srv-b", base, NodeHello{})
	if err != nil || e2 <= e1 {
		t.Fatalf("second up: epoch %d after %d, %v", e2, e1, err)
	}
	if err := s.NodeDown(ctx, "n1", e1, base); errdefs.KindOf(err) != errdefs.Conflict {
		t.Fatalf("stale down: %v, want Conflict", err)
	}
	if n, _ := s.Snapshot().Node("n1"); n.State != NodeReady || n.Server != "srv-b" {
		t.Fatalf("after the stale down: %+v", n)
	}
	if err := s.NodeDown(ctx, "n1", e2, base); err != nil {
		t.Fatal(err)
	}
	snap := s.Snapshot()
	if n, _ := snap.Node("n1"); n.State != NodeDown || n.Schedulable() {
		t.Fatalf("after down: %+v", n)
	}
	for id, want := range map[string]string{"s1": StateFailed, "s2": StateTerminated, "s3": StateRunning} {
		sb, _ := snap.Sandbox(id)
		if sb.State != want {
			t.Errorf("sandbox %s: %s, want %s", id, sb.State, want)
		}
	}
	if sb, _ := snap.Sandbox("s1"); sb.Reason != ReasonNodeLost {
		t.Errorf("lost sandbox reason %q", sb.Reason)
	}
	if err := s.NodeDown(ctx, "n1", e2, base); err != nil {
		t.Fatalf("down twice: %v", err)
	}
	if _, err := s.NodeUp(ctx, "n1", "srv-a", base, NodeHello{Pool: "gpu"}); errdefs.KindOf(err) != errdefs.FailedPrecondition || !strings.Contains(err.Error(), `node n1 is in pool "", not "gpu"`) {
		t.Fatalf("up in another pool: %v", err)
	}
	if _, err := s.NodeUp(ctx, "ghost", "srv-a", base, NodeHello{}); !errdefs.IsNotFound(err) {
		t.Fatalf("up of an unknown node: %v", err)
	}
}

func TestNodeDraining(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	putToken(t, s, &JoinToken{ID: "t", Hash: "h", Uses: 1})
	if err := s.JoinNode(ctx, "t", "h", base, &Node{ID: "n1"}); err != nil {
		t.Fatal(err)
	}
	state := func() string { n, _ := s.Snapshot().Node("n1"); return n.State }
	if _, err := s.NodeUp(ctx, "n1", "a", base, NodeHello{}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		do   func() error
		want string
	}{
		{func() error { return s.SetNodeDraining(ctx, "n1", true, base) }, NodeDraining},
		{func() error { return s.NodeDown(ctx, "n1", mustNode(t, s, "n1").Epoch, base) }, NodeDown},
		{func() error { _, err := s.NodeUp(ctx, "n1", "a", base, NodeHello{}); return err }, NodeDraining},
		{func() error { return s.SetNodeDraining(ctx, "n1", false, base) }, NodeReady},
	}
	for i, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := state(); got != st.want {
			t.Fatalf("step %d: state %s, want %s", i, got, st.want)
		}
	}
	if err := s.SetNodeDraining(ctx, "nope", true, base); !errdefs.IsNotFound(err) {
		t.Fatalf("drain an unknown node: %v", err)
	}
}

func mustNode(t *testing.T, s *Store, id string) *Node {
	t.Helper()
	n, err := s.Snapshot().Node(id)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestClusterSnapshotRestore(t *testing.T) {
	src := newTestFSM(t)
	src.apply(t, cmdPutJoinToken, joinTokenCmd{Token: &JoinToken{ID: "t", Hash: "h", Uses: 3, CreatedAt: base}})
	src.apply(t, cmdJoinNode, joinNodeCmd{TokenID: "t", TokenHash: "h", Now: base, Node: &Node{ID: "n1", Name: "box"}})
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
	for _, sn := range []*Snapshot{src.snapshot(), dst.snapshot()} {
		tok, err := sn.JoinToken("t")
		if err != nil || tok.Used != 1 {
			t.Fatalf("token: %+v %v", tok, err)
		}
		if n, err := sn.Node("n1"); err != nil || n.Name != "box" {
			t.Fatalf("node: %+v %v", n, err)
		}
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
