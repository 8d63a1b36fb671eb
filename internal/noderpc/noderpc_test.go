package noderpc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/fake"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/node"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/nodelink/linktest"
	"github.com/denhq/den/internal/store"
)

type images struct{}

func (images) Rootfs(ref string) (driver.Image, error) {
	if ref == "img" {
		return driver.Image{Ref: ref}, nil
	}
	return driver.Image{}, errdefs.New(errdefs.NotFound, "image %s not found", ref)
}

// cluster is one server store and one agent node "n1" joined by a node
// link, as den server and den agent are.
type cluster struct {
	st     *store.Store
	starts *Starts // the server's
	remote *RemoteNode
	link   *Link // the agent's
	node   *node.Node
	drv    *fake.Driver // the agent's runtime
}

func newCluster(t *testing.T, faults ...func(*fake.Config)) *cluster {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir(), NodeID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	serverMux, agentMux := nodelink.NewMux(), nodelink.NewMux()
	ServeRecords(serverMux, st)
	starts := NewStarts(nil)
	starts.Serve(serverMux)
	serverEnd, agentEnd := linktest.Connect(t, serverMux, agentMux, "n1")

	link := &Link{}
	link.Set(agentEnd)
	dcfg := fake.Config{Dir: t.TempDir()}
	for _, f := range faults {
		f(&dcfg)
	}
	drv, err := fake.New(dcfg)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(node.Config{ID: "n1", Driver: drv, Images: images{}, Records: RemoteRecords(link),
		SnapshotDir: filepath.Join(t.TempDir(), "snapshots")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close(); drv.Close() })
	ServeNode(agentMux, n)
	sessions := func(id string) (*nodelink.Session, bool) { return serverEnd, id == "n1" }
	return &cluster{st: st, starts: starts, remote: NewRemoteNode("n1", sessions), link: link, node: n, drv: drv}
}

func (c *cluster) record(t *testing.T, id, nodeID string) {
	t.Helper()
	sb := &store.Sandbox{ID: id, Tenant: "t", Image: "img", Node: nodeID, MemoryMB: 64, DiskMB: 64, CPUs: 1,
		TimeoutSec: 600, CreatedAt: time.Now(), AccessToken: "tok-" + id}
	if err := c.st.CreateSandbox(context.Background(), sb); err != nil {
		t.Fatal(err)
	}
}

// StartFrom and DestroyFrom carry the record the server read, so the node
// does not read it back. A stale one loses no write made since (the
// compare-and-set fails and the node reads the record), and a record
// deleted before the start leaves nothing running.
func TestStartFromAndDestroyFromCarryTheRecord(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	read := func(id string) *store.Sandbox {
		t.Helper()
		sb, err := c.st.Snapshot().Sandbox(id)
		if err != nil {
			t.Fatal(err)
		}
		return sb
	}
	c.record(t, "fresh", "n1")
	sb, err := c.remote.StartFrom(ctx, read("fresh"))
	if err != nil || sb.State != store.StateRunning {
		t.Fatalf("StartFrom = %+v, %v; want running", sb, err)
	}

	c.record(t, "stale", "n1")
	stale := read("stale")
	changed := read("stale")
	changed.Metadata = map[string]string{"k": "v"}
	if err := c.st.UpdateSandbox(ctx, changed); err != nil {
		t.Fatal(err)
	}
	if _, err := c.remote.StartFrom(ctx, stale); err != nil {
		t.Fatalf("StartFrom a stale record: %v", err)
	}
	if got := read("stale"); got.State != store.StateRunning || got.Metadata["k"] != "v" {
		t.Fatalf("after a start from a stale record: state %s, metadata %v; want running with k=v", got.State, got.Metadata)
	}

	c.record(t, "gone", "n1")
	gone := read("gone")
	if err := c.st.DeleteSandbox(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.remote.StartFrom(ctx, gone); !errdefs.IsNotFound(err) {
		t.Fatalf("StartFrom a deleted record = %v, want not found", err)
	}
	ids, err := c.drv.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(ids, "gone") {
		t.Fatalf("the runtime still holds a sandbox whose record was deleted: %v", ids)
	}

	for _, id := range []string{"fresh", "stale"} {
		if err := c.remote.DestroyFrom(ctx, read(id)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.st.Snapshot().Sandbox(id); !errdefs.IsNotFound(err) {
			t.Fatalf("after DestroyFrom the record of %s is %v, want gone", id, err)
		}
	}
	if ids, _ := c.drv.List(ctx); len(ids) != 0 {
		t.Fatalf("the runtime still holds %v", ids)
	}
}

func TestStartExecDestroyThroughTheLink(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	c.record(t, "sb-1", "n1")
	sb, err := c.remote.StartFrom(ctx, &store.Sandbox{ID: "sb-1"})
	if err != nil {
		t.Fatal(err)
	}
	if sb.State != store.StateRunning || len(sb.Handle) == 0 {
		t.Fatalf("started record %+v", sb)
	}
	// The server's store has what the agent settled.
	if got, _ := c.st.Snapshot().Sandbox("sb-1"); got.State != store.StateRunning || got.ModifyIndex != sb.ModifyIndex {
		t.Fatalf("store has %+v", got)
	}
	// The guest agent answers through the link.
	conn, err := c.remote.DialGuest(ctx, "sb-1")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://guest/health", nil)
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	conn.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("guest /health through the link: %s", resp.Status)
	}
	info, err := c.remote.Info(ctx)
	if err != nil || info.ID != "n1" || len(info.Runtimes) == 0 || info.Resources.CPUs == 0 {
		t.Fatalf("info %+v %v", info, err)
	}
	if err := c.remote.DestroyFrom(ctx, &store.Sandbox{ID: "sb-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.st.Snapshot().Sandbox("sb-1"); !errdefs.IsNotFound(err) {
		t.Fatalf("after destroy the record is %v, want gone", err)
	}
	if _, err := c.remote.DialGuest(ctx, "sb-1"); err == nil {
		t.Fatal("dialled the guest of a destroyed sandbox")
	}
}

// TestNodeSeesOnlyItsOwnRecords plays a compromised agent: it reads and
// writes records of another node's sandbox through the link.
func TestNodeSeesOnlyItsOwnRecords(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	c.record(t, "mine", "n1")
	c.record(t, "theirs", "n2")
	recs := RemoteRecords(c.link)
	if _, err := recs.Snapshot().Sandbox("theirs"); !errdefs.IsNotFound(err) {
		t.Fatalf("read another node's sandbox: %v, want NotFound", err)
	}
	all, _, err := recs.Snapshot().Sandboxes(store.SandboxFilter{Node: "n2"})
	if err != nil || len(all) != 1 || all[0].ID != "mine" {
		t.Fatalf("listing asked for n2 got %d records %v (want only its own)", len(all), err)
	}
	theirs, _ := c.st.Snapshot().Sandbox("theirs")
	theirs.State = store.StateFailed
	if err := recs.UpdateSandbox(ctx, theirs); !errdefs.IsNotFound(err) {
		t.Fatalf("update another node's sandbox: %v, want NotFound", err)
	}
	if err := recs.DeleteSandbox(ctx, "theirs"); !errdefs.IsNotFound(err) {
		t.Fatalf("delete another node's sandbox: %v, want NotFound", err)
	}
	mine, _ := c.st.Snapshot().Sandbox("mine")
	for name, change := range map[string]func(*store.Sandbox){
		"move it":       func(sb *store.Sandbox) { sb.Node = "n2" },
		"change tenant": func(sb *store.Sandbox) { sb.Tenant = "other" },
		"change token":  func(sb *store.Sandbox) { sb.AccessToken = "stolen" },
	} {
		sb := mine.Clone()
		change(sb)
		if err := recs.UpdateSandbox(ctx, sb); !errdefs.Is(err, errdefs.PermissionDenied) {
			t.Errorf("%s: %v, want PermissionDenied", name, err)
		}
	}
	if got, _ := c.st.Snapshot().Sandbox("theirs"); got.State == store.StateFailed {
		t.Fatal("another node's sandbox changed")
	}
	if err := recs.CreateSandboxSnapshot(ctx, &store.SandboxSnapshot{ID: "snap", Node: "n2", Tenant: "t"}); !errdefs.Is(err, errdefs.PermissionDenied) {
		t.Fatalf("record a snapshot for another node: %v", err)
	}
}

func TestLinkDownIsUnavailable(t *testing.T) {
	var l Link
	if _, err := RemoteRecords(&l).Snapshot().Sandbox("x"); !errdefs.Is(err, errdefs.Unavailable) || !strings.Contains(err.Error(), "not connected") {
		t.Fatalf("read with no link: %v", err)
	}
	r := NewRemoteNode("gone", func(string) (*nodelink.Session, bool) { return nil, false })
	if _, err := r.StartFrom(context.Background(), &store.Sandbox{ID: "x"}); !errdefs.Is(err, errdefs.Unavailable) {
		t.Fatalf("start on a node that is not connected: %v", err)
	}
}

// TestDropLost: a sandbox the servers reported lost while its node was
// cut off is stopped by the node when its link is back; its record stays.
func TestDropLost(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	c.record(t, "lost", "n1")
	c.record(t, "kept", "n1")
	c.record(t, "deleted", "n1")
	for _, id := range []string{"lost", "kept", "deleted"} {
		if _, err := c.remote.StartFrom(ctx, &store.Sandbox{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	sb, _ := c.st.Snapshot().Sandbox("lost")
	sb.State, sb.Reason = store.StateFailed, store.ReasonNodeLost
	if err := c.st.UpdateSandbox(ctx, sb); err != nil {
		t.Fatal(err)
	}
	// Deleted on the servers while the node could not be told.
	if err := c.st.DeleteSandbox(ctx, "deleted"); err != nil {
		t.Fatal(err)
	}
	if err := c.node.DropLost(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.remote.DialGuest(ctx, "lost"); !errdefs.IsNotFound(err) {
		t.Fatalf("the lost sandbox's guest after DropLost: %v, want NotFound (stopped)", err)
	}
	if _, err := c.remote.DialGuest(ctx, "deleted"); !errdefs.IsNotFound(err) {
		t.Fatalf("a sandbox with no record after DropLost: %v, want NotFound (stopped)", err)
	}
	if got, err := c.st.Snapshot().Sandbox("lost"); err != nil || got.State != store.StateFailed {
		t.Fatalf("the lost sandbox's record: %+v %v, want kept, failed", got, err)
	}
	conn, err := c.remote.DialGuest(ctx, "kept")
	if err != nil {
		t.Fatalf("the other sandbox: %v", err)
	}
	conn.Close()
	// Deleting the lost record afterwards works as for any sandbox.
	if err := c.remote.DestroyFrom(ctx, &store.Sandbox{ID: "lost"}); err != nil {
		t.Fatal(err)
	}
}

// TestCopyAdaptive checks copyAdaptive delivers every byte in order for
// readers that return full, short and one-byte reads, switching buffers
// on the way, and returns a write error.
func TestCopyAdaptive(t *testing.T) {
	payload := make([]byte, 3<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	for name, src := range map[string]func() io.Reader{
		"bulk":     func() io.Reader { return bytes.NewReader(payload) },
		"half":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(payload)) },
		"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(payload[:64<<10])) },
		"chunky":   func() io.Reader { return &chunkReader{data: payload} },
	} {
		var out bytes.Buffer
		if err := copyAdaptive(&out, src()); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := payload
		if name == "one byte" {
			want = payload[:64<<10]
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Errorf("%s: copied %d bytes, not the %d sent", name, out.Len(), len(want))
		}
	}
	wantErr := errors.New("peer gone")
	if err := copyAdaptive(errWriter{wantErr}, bytes.NewReader(payload)); !errors.Is(err, wantErr) {
		t.Errorf("copy to a failing writer = %v, want %v", err, wantErr)
	}
}

// chunkReader returns reads of varying sizes: full 32 KiB runs, then a
// short read, then a tiny one, over and over.
type chunkReader struct {
	data []byte
	i    int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	sizes := []int{len(p), len(p), 100, 1, len(p), 5000}
	n := min(sizes[r.i%len(sizes)], len(p), len(r.data))
	r.i++
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }
