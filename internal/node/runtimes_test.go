package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/fake"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

// TestRuntimes runs a node with two runtimes (fakes named "fake" and
// "vm"): a sandbox runs on the one its record names, every call for it
// goes there, and one naming a runtime the node lacks fails its start.
func TestRuntimes(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir(), NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	defDir, vmDir := t.TempDir(), t.TempDir()
	def, err := fake.New(fake.Config{Dir: defDir})
	if err != nil {
		t.Fatal(err)
	}
	vm, err := fake.New(fake.Config{Dir: vmDir, Name: "vm"})
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(Config{ID: "n1", Driver: def, Runtimes: []driver.Driver{vm}, Images: images{}, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()

	rts := n.Runtimes()
	if len(rts) != 2 || rts[0].Name != "fake" || !rts[0].Default || rts[1].Name != "vm" || rts[1].Default {
		t.Fatalf("Runtimes() = %+v, want fake (default) then vm", rts)
	}
	if _, err := n.Runtime("firecracker"); !errdefs.Is(err, errdefs.InvalidArgument) {
		t.Errorf("Runtime(firecracker) = %v, want InvalidArgument", err)
	}

	record := func(id, runtime string) {
		sb := &store.Sandbox{ID: id, Tenant: "t", Image: "img", State: store.StateStarting, Runtime: runtime, Node: "n1",
			MemoryMB: 64, DiskMB: 64, CPUs: 1, CreatedAt: time.Now()}
		if err := st.CreateSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(dir, id string) bool { _, err := os.Stat(filepath.Join(dir, id)); return err == nil }

	record("on-vm", "vm")
	record("on-default", "")
	for _, id := range []string{"on-vm", "on-default"} {
		if _, err := n.Start(ctx, id); err != nil {
			t.Fatalf("Start %s: %v", id, err)
		}
	}
	if !exists(vmDir, "on-vm") || exists(defDir, "on-vm") {
		t.Errorf("sandbox of runtime vm: in vm's dir %v, in the default's %v", exists(vmDir, "on-vm"), exists(defDir, "on-vm"))
	}
	if !exists(defDir, "on-default") || exists(vmDir, "on-default") {
		t.Errorf("sandbox of no runtime: in the default's dir %v, in vm's %v", exists(defDir, "on-default"), exists(vmDir, "on-default"))
	}
	if conn, err := n.DialGuest(ctx, "on-vm"); err != nil {
		t.Errorf("DialGuest of the vm sandbox: %v", err)
	} else {
		conn.Close()
	}
	if _, err := n.Stats(ctx, "on-vm"); err != nil {
		t.Errorf("Stats of the vm sandbox: %v", err)
	}
	if _, err := n.Suspend(ctx, "on-vm"); !errdefs.Is(err, errdefs.Unsupported) {
		t.Errorf("Suspend without a snapshot dir = %v, want Unsupported", err)
	}
	if err := n.Destroy(ctx, "on-vm"); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if exists(vmDir, "on-vm") {
		t.Errorf("Destroy left the vm sandbox's dir")
	}

	record("on-nothing", "firecracker")
	if _, err := n.Start(ctx, "on-nothing"); !errdefs.Is(err, errdefs.InvalidArgument) {
		t.Errorf("Start on an unknown runtime = %v, want InvalidArgument", err)
	}
	if sb, err := st.Snapshot().Sandbox("on-nothing"); err != nil || sb.State != store.StateFailed {
		t.Errorf("record after a start on an unknown runtime: %+v, %v", sb, err)
	}
}

// readCounter counts the sandbox record reads a node makes (on an agent,
// each is a round trip to the server).
type readCounter struct {
	Records
	reads int
}

func (r *readCounter) Snapshot() RecordReader { return countingReader{r.Records.Snapshot(), r} }

type countingReader struct {
	RecordReader
	c *readCounter
}

func (r countingReader) Sandbox(id string) (*store.Sandbox, error) {
	r.c.reads++
	return r.RecordReader.Sandbox(id)
}

// A guest stream to a sandbox the node started reads no record to find
// its runtime, with one runtime or several; a sandbox the node did not
// start is looked up once.
func TestGuestDialsReadNoRecord(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir(), NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, runtimes := range []int{0, 1} {
		def, err := fake.New(fake.Config{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		var others []driver.Driver
		if runtimes > 0 {
			vm, err := fake.New(fake.Config{Dir: t.TempDir(), Name: "vm"})
			if err != nil {
				t.Fatal(err)
			}
			others = append(others, vm)
		}
		recs := &readCounter{Records: StoreRecords(st)}
		n, err := New(Config{ID: "n1", Driver: def, Runtimes: others, Images: images{}, Records: recs})
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("sb-%d", runtimes)
		sb := &store.Sandbox{ID: id, Tenant: "t", Image: "img", Node: "n1", MemoryMB: 64, DiskMB: 64, CPUs: 1, CreatedAt: time.Now()}
		if runtimes > 0 {
			sb.Runtime = "vm"
		}
		if _, err := n.StartNew(ctx, sb); err != nil {
			t.Fatal(err)
		}
		recs.reads = 0
		for range 3 {
			conn, err := n.DialGuest(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			conn.Close()
		}
		if recs.reads != 0 {
			t.Errorf("%d extra runtimes: 3 guest dials read %d records, want 0", runtimes, recs.reads)
		}
		// Another node object over the same state (an agent restarted)
		// looks the runtime up once.
		n.Close()
		n2, err := New(Config{ID: "n1", Driver: def, Runtimes: others, Images: images{}, Records: recs})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if conn, err := n2.DialGuest(ctx, id); err == nil {
				conn.Close()
			} else {
				t.Fatal(err)
			}
		}
		if want := runtimes; recs.reads != want {
			t.Errorf("%d extra runtimes: a restarted node's 3 guest dials read %d records, want %d", runtimes, recs.reads, want)
		}
		if err := n2.Destroy(ctx, id); err != nil {
			t.Fatal(err)
		}
		n2.Close()
	}
}
