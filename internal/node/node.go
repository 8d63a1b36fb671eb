// Package node is den's data plane on one host: it runs the sandboxes the
// replicated store assigns to this node on a runtime driver and writes what
// happened back to the store. The server never calls a driver directly; it
// asks a node (in-process for `den up`, over the node channel in a cluster).
//
// Invariants:
//   - A sandbox record reaches state running only after the driver returned
//     its handle, and the handle is stored with that same write, so a crash
//     at any point leaves a record the next Recover can settle.
//   - Operations on one sandbox are serialised by a per-ID lock.
package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/sandboxnet"
	"github.com/denhq/den/internal/snapshot"
	"github.com/denhq/den/internal/store"
)

// ImageResolver turns an image reference into a prepared root filesystem.
type ImageResolver interface {
	Rootfs(ref string) (driver.Image, error)
}

// Config wires a Node.
type Config struct {
	// ID names this node in sandbox records.
	ID string
	// Driver is the default runtime; Runtimes are further ones, each
	// known by its Capabilities().Name (see runtimes.go).
	Driver   driver.Driver
	Runtimes []driver.Driver
	Images   ImageResolver
	// Records are the replicated records the node reads and settles;
	// Store, when Records is nil, is the store in this process.
	Records Records
	Store   *store.Store
	Logger  *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// SnapshotDir holds the saved state of suspended sandboxes
	// (<data-dir>/snapshots), on the same file system as the driver's
	// state so a driver can write there cheaply. Empty turns suspend off
	// even when the driver implements driver.Suspender.
	SnapshotDir string
	// Networks gives sandboxes their networks and enforces their policies;
	// the drivers hold the same manager. Nil: sandboxes have no network.
	Networks *sandboxnet.Manager
	// Layers is the image store (*image.Store) that filesystem snapshots
	// commit their layer to and record their image in; nil turns
	// filesystem snapshots off. They also need SnapshotDir.
	Layers ImageCommitter
}

// Validate reports a missing dependency.
func (c *Config) Validate() error {
	switch {
	case c.ID == "":
		return errdefs.New(errdefs.InvalidArgument, "node config: ID is required")
	case c.Driver == nil || c.Images == nil || (c.Store == nil && c.Records == nil):
		return errdefs.New(errdefs.InvalidArgument, "node config: Driver, Images and Records (or Store) are required")
	}
	return nil
}

// Node runs sandboxes on one host.
type Node struct {
	cfg     Config
	records Records
	log     *slog.Logger
	locks   keyedMutex
	// snaps is nil when suspend is off: no snapshot directory, or no
	// runtime that can (see suspender).
	snaps *snapshot.Store
	// objs holds snapshot objects (snapshot_objects.go); nil with snaps.
	objs *snapshot.Store
	// pools is the node's view of the declared warm pools (pools.go).
	pools poolsState
	// beforeStep, when set (tests), runs before each step of a suspend or
	// resume: an error fails the step, a panic stands for a crash.
	beforeStep func(op, step string) error

	// runtimeOf remembers the driver of each sandbox (see drv).
	runtimeOf sync.Map

	// stop ends the sandbox watchers; wg waits for them.
	stop      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// New returns a Node; call Recover before serving.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	n := &Node{cfg: cfg, log: cfg.Logger, stop: make(chan struct{}), records: cfg.Records}
	if n.records == nil {
		n.records = StoreRecords(cfg.Store)
	}
	if n.anySuspender() && cfg.SnapshotDir != "" {
		snaps, err := snapshot.Open(cfg.SnapshotDir)
		if err != nil {
			return nil, err
		}
		objs, err := snaps.Objects()
		if err != nil {
			return nil, err
		}
		n.snaps, n.objs = snaps, objs
	}
	return n, nil
}

// ID is the node's name.
func (n *Node) ID() string { return n.cfg.ID }

// Capabilities of the node's driver. Suspend is true only when the
// driver implements driver.Suspender and the node has a snapshot
// directory.
func (n *Node) Capabilities() driver.Capabilities {
	return n.capabilities(n.cfg.Driver)
}

// Start builds and starts the sandbox whose record (state starting, this
// node) is already in the store, and records the result: running with its
// handle, or failed with the reason. Once it is running, the image's
// command, if any, is started as its main process (see startMain). It
// returns the final record.
func (n *Node) Start(ctx context.Context, id string) (*store.Sandbox, error) {
	return n.StartFrom(ctx, &store.Sandbox{ID: id})
}

// StartFrom is Start given the record as the caller last read it, which
// saves reading it again (on an agent, a round trip to the server): a
// stale one fails the compare-and-set of the running state, which then
// reads the record. A record with a zero ModifyIndex is read first. When
// the record is gone by the time the sandbox runs (deleted meanwhile),
// the sandbox is destroyed again.
func (n *Node) StartFrom(ctx context.Context, cur *store.Sandbox) (*store.Sandbox, error) {
	id := cur.ID
	unlock := n.locks.lock(id)
	defer unlock()
	sb := cur
	if sb.ModifyIndex == 0 {
		var err error
		if sb, err = n.records.Snapshot().Sandbox(id); err != nil {
			return nil, err
		}
	}
	h, img, err := n.createOnDriver(ctx, sb)
	if err != nil {
		n.log.Warn("sandbox start failed", "sandbox", id, "err", err)
		if _, ferr := n.setStateFrom(context.WithoutCancel(ctx), sb, func(s *store.Sandbox) {
			s.State, s.Reason = "failed", err.Error()
		}); ferr != nil {
			n.log.Error("record failed sandbox", "sandbox", id, "err", ferr)
		}
		return nil, err
	}
	running, err := n.setStateFrom(context.WithoutCancel(ctx), sb, func(s *store.Sandbox) {
		now := n.cfg.Now()
		s.State, s.Reason, s.Handle, s.StartedAt = "running", "", h, now
		if s.TimeoutSec > 0 {
			s.ExpiresAt = now.Add(time.Duration(s.TimeoutSec) * time.Second)
		}
	})
	if errdefs.IsNotFound(err) {
		// Deleted while it started: nothing may run without a record.
		if derr := n.driverOf(sb).Destroy(context.WithoutCancel(ctx), id); derr != nil {
			n.log.Error("destroy sandbox whose record is gone", "sandbox", id, "err", derr)
		}
		return nil, err
	}
	if err == nil {
		n.ranOn(id, n.driverOf(sb))
		n.watch(id)
		n.startMain(ctx, id, img)
	}
	return running, err
}

// StartClaimed starts new sandbox sb from a warm spare of its runtime, when
// one is ready, and records it with record, running: one store write where
// Start needs its record first and a second one when the sandbox runs. A
// claim takes about a millisecond and no one can name the sandbox before
// its create answers, so the record need not come first. It returns nil
// and no error when the runtime keeps no spares or has none ready: the
// caller records sb and calls Start. When record fails, the claimed
// sandbox is destroyed and the error returned. A crash between the claim
// and the record leaves a sandbox without a record, which Recover destroys
// (and DropLost, on an agent).
func (n *Node) StartClaimed(ctx context.Context, sb *store.Sandbox, record func(*store.Sandbox) error) (*store.Sandbox, error) {
	return n.startUnrecorded(ctx, sb, record, false)
}

// StartNew starts new sandbox sb, which has no record yet, from a warm
// spare when one is ready and else cold, and then records it, running,
// with Records.CreateSandbox: one store write for the whole start. It is
// how a server starts a sandbox on an agent (one write replicated to
// every server, where a record first and then the running state are two;
// the server lets a node create only the record it asked for). A failed
// start records nothing: the error is the create's answer. As with
// StartClaimed, a crash between the start and the record leaves a
// sandbox without a record, which Recover and DropLost destroy.
func (n *Node) StartNew(ctx context.Context, sb *store.Sandbox) (*store.Sandbox, error) {
	return n.startUnrecorded(ctx, sb, func(rec *store.Sandbox) error {
		// The caller's end must not cut the write short: the server
		// settles the start only once the write is answered, and an
		// answer lost here would leave the two disagreeing.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordWait)
		defer cancel()
		return n.records.CreateSandbox(ctx, rec)
	}, true)
}

// recordWait bounds StartNew's record write.
const recordWait = 30 * time.Second

// outcomeUnknown reports whether a failed record write may have been
// written all the same: the link to the server broke or timed out before
// the answer came.
func outcomeUnknown(err error) bool {
	return errdefs.Is(err, errdefs.Unavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// startUnrecorded starts sb from a spare (or, with cold, from scratch when
// its runtime has none ready), records it, running, with record, and
// starts the image's command. It holds sb's lock until the record is
// written, so that DropLost, which stops sandboxes without records, does
// not take it for an orphan. Without cold and without a spare it returns
// nil and no error.
func (n *Node) startUnrecorded(ctx context.Context, sb *store.Sandbox, record func(*store.Sandbox) error, cold bool) (*store.Sandbox, error) {
	d, err := n.runtime(sb.Runtime)
	if err != nil {
		return nil, err
	}
	c, claims := d.(driver.Claimer)
	if !claims && !cold {
		return nil, nil
	}
	img, err := n.cfg.Images.Rootfs(sb.Image)
	if err != nil {
		if !cold {
			return nil, nil // Start records the failure
		}
		return nil, fmt.Errorf("resolve image %s: %w", sb.Image, err)
	}
	unlock := n.locks.lock(sb.ID)
	defer unlock()
	var h *driver.Handle
	if claims {
		if h, err = c.Claim(ctx, specOf(sb, img)); err != nil {
			return nil, err
		}
	}
	if h == nil {
		if !cold {
			return nil, nil
		}
		if h, err = d.Create(ctx, specOf(sb, img)); err != nil {
			n.log.Warn("sandbox start failed", "sandbox", sb.ID, "err", err)
			return nil, fmt.Errorf("create sandbox %s: %w", sb.ID, err)
		}
	}
	rec := sb.Clone()
	if rec.Handle, err = json.Marshal(h); err == nil {
		now := n.cfg.Now()
		rec.State, rec.Reason, rec.StartedAt = store.StateRunning, "", now
		if rec.TimeoutSec > 0 {
			rec.ExpiresAt = now.Add(time.Duration(rec.TimeoutSec) * time.Second)
		}
		err = record(rec)
	}
	switch {
	case err != nil && cold && outcomeUnknown(err):
		// Recorded or not, nobody can say until the link is back;
		// then DropLost stops it if it has no record.
		n.log.Warn("a started sandbox's record write went unanswered; left to the orphan check", "sandbox", sb.ID, "err", err)
		return nil, err
	case err != nil:
		if derr := d.Destroy(context.WithoutCancel(ctx), sb.ID); derr != nil {
			n.log.Error("destroy a started sandbox that was not recorded", "sandbox", sb.ID, "err", derr)
		}
		return nil, err
	}
	n.ranOn(sb.ID, d)
	n.watch(sb.ID)
	n.startMain(ctx, sb.ID, img)
	return rec, nil
}

// createOnDriver resolves the sandbox's image and creates it on the driver;
// it returns the encoded handle and the image.
func (n *Node) createOnDriver(ctx context.Context, sb *store.Sandbox) (json.RawMessage, driver.Image, error) {
	img, err := n.cfg.Images.Rootfs(sb.Image)
	if err != nil {
		return nil, img, fmt.Errorf("resolve image %s: %w", sb.Image, err)
	}
	d, err := n.runtime(sb.Runtime)
	if err != nil {
		return nil, img, err
	}
	h, err := d.Create(ctx, specOf(sb, img))
	if err != nil {
		return nil, img, fmt.Errorf("create sandbox %s: %w", sb.ID, err)
	}
	raw, err := json.Marshal(h)
	if err != nil {
		_ = n.drv(sb.ID).Destroy(context.WithoutCancel(ctx), sb.ID)
		return nil, img, fmt.Errorf("encode handle of sandbox %s: %w", sb.ID, err)
	}
	return raw, img, nil
}

// specOf is the driver spec of sandbox sb on image img.
func specOf(sb *store.Sandbox, img driver.Image) driver.Spec {
	return driver.Spec{
		ID: sb.ID, Image: img, CPUs: sb.CPUs, MemoryMB: sb.MemoryMB, DiskMB: sb.DiskMB,
		Env: sb.Env, Hostname: hostname(sb), User: sb.User, Network: policyOf(sb.Network),
	}
}

func hostname(sb *store.Sandbox) string {
	if sb.Name != "" && len(sb.Name) <= 63 {
		return sb.Name
	}
	return sb.ID
}

// Destroy stops the sandbox, removes its snapshots and its record. It is
// idempotent.
func (n *Node) Destroy(ctx context.Context, id string) error {
	return n.DestroyFrom(ctx, &store.Sandbox{ID: id})
}

// DestroyFrom is Destroy given the record as the caller last read it (see
// StartFrom), which names the runtime to destroy it on; a cur with a zero
// ModifyIndex is read first. The record is removed once the sandbox is
// gone, with no stopping state written first: the sandbox's lock keeps
// the node's other work on it (its watcher, a suspend) out meanwhile, as
// Docker keeps its removal-in-progress mark in memory, and a delete is
// one store write. A crash between the two leaves a running record of a
// sandbox that is gone, which Recover marks failed and a second delete
// removes.
func (n *Node) DestroyFrom(ctx context.Context, cur *store.Sandbox) error {
	id := cur.ID
	unlock := n.locks.lock(id)
	defer unlock()
	sb := cur
	if sb.ModifyIndex == 0 {
		var err error
		if sb, err = n.records.Snapshot().Sandbox(id); errdefs.IsNotFound(err) {
			// No record says where it ran: any runtime may hold it.
			var errs []error
			for _, d := range n.drivers() {
				errs = append(errs, d.Destroy(ctx, id))
			}
			return errors.Join(errs...)
		} else if err != nil {
			return err
		}
	}
	if err := n.driverOf(sb).Destroy(ctx, id); err != nil {
		return fmt.Errorf("destroy sandbox %s: %w", id, err)
	}
	if n.snaps != nil {
		if err := n.snaps.Remove(id); err != nil {
			return fmt.Errorf("destroy sandbox %s: %w", id, err)
		}
	}
	if err := n.records.DeleteSandbox(ctx, id); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete record of sandbox %s: %w", id, err)
	}
	n.forgetRuntime(id)
	return nil
}

// DialGuest opens a stream to the guest agent of a running sandbox.
func (n *Node) DialGuest(ctx context.Context, id string) (net.Conn, error) {
	return n.drv(id).DialGuest(ctx, id)
}

// HandOffGuest lets sandbox id's runtime serve a guest stream itself when
// its guest agents run in this process (driver.GuestHandoff); handled is
// false when they do not, and the caller dials the guest (DialGuest). An
// error comes before accept is called.
func (n *Node) HandOffGuest(ctx context.Context, id string, accept func() (net.Conn, error)) (handled bool, err error) {
	h, ok := n.drv(id).(driver.GuestHandoff)
	if !ok {
		return false, nil
	}
	return true, h.HandOffGuest(ctx, id, accept)
}

// Stats reads a sandbox's resource usage; Unsupported when the driver can't.
func (n *Node) Stats(ctx context.Context, id string) (driver.Stats, error) {
	d := n.drv(id)
	sr, ok := d.(driver.StatsReader)
	if !ok {
		return driver.Stats{}, errdefs.New(errdefs.Unsupported, "runtime %s does not report stats", d.Capabilities().Name)
	}
	return sr.Stats(ctx, id)
}

// setState applies change to the stored record with compare-and-set,
// retrying on conflicts with concurrent writers.
func (n *Node) setState(ctx context.Context, id string, change func(*store.Sandbox)) (*store.Sandbox, error) {
	return n.setStateFrom(ctx, &store.Sandbox{ID: id}, change)
}

// setStateFrom is setState starting from cur, the record as last read (a
// read saved; on the node link a round trip): a stale cur fails the
// compare-and-set, and the retry reads the record. A cur with a zero
// ModifyIndex is read first.
func (n *Node) setStateFrom(ctx context.Context, cur *store.Sandbox, change func(*store.Sandbox)) (*store.Sandbox, error) {
	id := cur.ID
	for attempt := 0; ; attempt++ {
		if attempt > 0 || cur.ModifyIndex == 0 {
			var err error
			if cur, err = n.records.Snapshot().Sandbox(id); err != nil {
				return nil, err
			}
		}
		next := *cur
		change(&next)
		err := n.records.UpdateSandbox(ctx, &next)
		if err == nil || !errdefs.Is(err, errdefs.Conflict) || attempt >= 10 {
			return &next, err
		}
	}
}

// keyedMutex serialises work per sandbox ID.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*refMutex
}

type refMutex struct {
	sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*refMutex{}
	}
	m := k.locks[key]
	if m == nil {
		m = &refMutex{}
		k.locks[key] = m
	}
	m.refs++
	k.mu.Unlock()
	m.Lock()
	return func() {
		m.Unlock()
		k.mu.Lock()
		if m.refs--; m.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
