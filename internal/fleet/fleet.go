// Package fleet is a cluster's data plane as a server sees it: the nodes
// whose agents are connected, each driven over its node link
// (internal/noderpc), and the placement of new sandboxes on them by the
// scheduler (internal/scheduler). A Fleet is the server.Node of `den
// server`: it routes each operation on a sandbox to the node its record
// names, and places a new sandbox before its record is written
// (server.Placer), so the record that reaches the store already carries
// its node.
//
// Invariants:
//   - A sandbox is placed on a node only while the node's agent is
//     connected and the node is up (not draining, not down).
//   - The scheduler holds every live sandbox of a connected node: a node's
//     placements are restored from the store when it joins, released when
//     the sandbox is destroyed, and no decision over-commits a node.
package fleet

import (
	"context"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/node"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/noderpc"
	"github.com/denhq/den/internal/scheduler"
	"github.com/denhq/den/internal/store"
)

// ID is what a Fleet answers as its node ID: the cluster as a whole.
const ID = "cluster"

// Config wires a Fleet.
type Config struct {
	Store *store.Store
	// Sessions finds a connected node's link (the node listener's registry).
	Sessions noderpc.Sessions
	Logger   *slog.Logger
}

// Fleet is the connected nodes of a cluster.
type Fleet struct {
	cfg   Config
	log   *slog.Logger
	sched *scheduler.Scheduler

	// joinMu orders joins and pool admissions: a node's placements are
	// restored before it takes new ones.
	joinMu sync.Mutex
	mu     sync.RWMutex
	nodes  map[string]*member // guarded by mu
	// waiting are joined nodes of a dedicated pool no tenant owns yet;
	// they join the scheduler when one does (SyncPools). Guarded by mu.
	waiting map[string]scheduler.Node

	placed, refused atomic.Int64 // for Metrics
	// joining counts connected nodes whose join (OnConnect) is under way:
	// their records may say ready before the fleet can use them.
	joining atomic.Int32

	// wakeMu guards woken: the creates parked for capacity (Place with a
	// wait), by sandbox ID, each waiting for its placement.
	wakeMu sync.Mutex
	woken  map[string]chan scheduler.Placement

	// starts are the sandboxes asked of nodes by StartClaimed, which the
	// nodes record themselves (see ServeStarts).
	starts *noderpc.Starts
	// runtimes caches Runtimes; nil when a node has joined since. It is
	// set under f.mu's read lock and cleared under its write lock.
	runtimes atomic.Pointer[[]node.RuntimeInfo]
}

// member is a joined node.
type member struct {
	remote *noderpc.RemoteNode
	info   noderpc.Info
	node   scheduler.Node
}

// New returns a Fleet with no nodes.
func New(cfg Config) *Fleet {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Fleet{cfg: cfg, log: cfg.Logger.With("component", "fleet"), sched: scheduler.New(),
		nodes: map[string]*member{}, waiting: map[string]scheduler.Node{}, woken: map[string]chan scheduler.Placement{},
		starts: noderpc.NewStarts(nil)}
}

// ServeStarts registers on mux (the server's end of the node links) the
// call by which a node records a sandbox StartClaimed asked it to start.
func (f *Fleet) ServeStarts(mux *nodelink.Mux) { f.starts.Serve(mux) }

// Scheduler is the fleet's scheduler (for metrics and invariant checks).
func (f *Fleet) Scheduler() *scheduler.Scheduler { return f.sched }

// NodeSpec is what the node listener knows of a node that joined.
type NodeSpec struct {
	ID     string
	Pool   string // "" is the shared pool
	Labels map[string]string
	// Capacity overrides what the node reports (simulated nodes); zero
	// takes the node's CPUs and memory, and DiskMB unlimited.
	Capacity scheduler.Resources
	// Status is what the node may take once joined: up (the zero value),
	// or draining as its record says.
	Status scheduler.NodeStatus
}

// Join adds a connected node: it reads what the node has, gives its
// capacity to the scheduler and restores the placements of its live
// sandboxes from the store. A node that joins again replaces itself.
func (f *Fleet) Join(ctx context.Context, spec NodeSpec) error {
	remote := noderpc.NewRemoteNode(spec.ID, f.cfg.Sessions)
	info, err := remote.Info(ctx)
	if err != nil {
		return err
	}
	capacity := spec.Capacity
	if capacity == (scheduler.Resources{}) {
		capacity = scheduler.Resources{CPUMillis: int64(info.Resources.CPUs) * 1000, MemoryMB: info.Resources.MemoryMB, DiskMB: 1 << 40}
	}
	// The node enters taking nothing, its live sandboxes are bound to it,
	// and only then is it up: no decision sees it empty in between.
	sn := scheduler.Node{ID: spec.ID, Pool: spec.Pool, Capacity: capacity, Labels: maps.Clone(spec.Labels), Status: scheduler.NodeDraining}
	for _, rt := range info.Runtimes {
		sn.Runtimes = append(sn.Runtimes, rt.Name)
	}
	f.SyncPools()
	f.joinMu.Lock()
	defer f.joinMu.Unlock()
	err = f.sched.UpsertNode(sn)
	f.mu.Lock()
	_, again := f.nodes[spec.ID]
	f.nodes[spec.ID] = &member{remote: remote, info: info, node: sn}
	f.runtimes.Store(nil)
	if errdefs.IsNotFound(err) && sn.Pool != "" && sn.Pool != scheduler.SharedPool {
		f.waiting[spec.ID] = sn
		f.mu.Unlock()
		f.log.Warn("node joined a node pool no tenant owns: it takes no sandboxes until one does (den tenant set NAME --node-pools POOL)",
			"node", spec.ID, "pool", sn.Pool)
		return nil
	}
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if !again {
		f.restore(spec.ID)
	}
	if err := f.setStatus(spec.ID, spec.Status); err != nil {
		return err
	}
	f.log.Info("node joined", "node", spec.ID, "pool", sn.Pool, "cpus", info.Resources.CPUs, "memory_mb", info.Resources.MemoryMB)
	return nil
}

// SyncPools makes the scheduler's dedicated pools those the tenants'
// placements name, with their owners and overflow policies, and admits
// the nodes that waited for their pool's owner.
func (f *Fleet) SyncPools() {
	tenants, err := f.cfg.Store.Snapshot().Tenants()
	if err != nil {
		f.log.Error("read tenants for their node pools", "error", err)
		return
	}
	for _, t := range tenants {
		for _, pool := range t.Placement.NodePools {
			err := f.sched.AddPool(scheduler.Pool{Name: pool, Tenant: t.ID, OverflowToShared: t.Placement.OverflowToShared})
			if errdefs.Is(err, errdefs.AlreadyExists) {
				err = f.sched.SetPoolPolicy(pool, t.ID, t.Placement.OverflowToShared)
			}
			if err != nil {
				f.log.Warn("node pool policy", "pool", pool, "tenant", t.ID, "error", err)
			}
		}
	}
	f.joinMu.Lock()
	defer f.joinMu.Unlock()
	f.mu.Lock()
	var ready []scheduler.Node
	for id, sn := range f.waiting {
		sn.Status = scheduler.NodeDraining // up once its sandboxes are bound
		if err := f.sched.UpsertNode(sn); err == nil {
			delete(f.waiting, id)
			ready = append(ready, sn)
		}
	}
	f.mu.Unlock()
	for _, sn := range ready {
		f.restore(sn.ID)
		f.setStatus(sn.ID, scheduler.NodeUp)
		f.log.Info("node admitted: its node pool has an owner", "node", sn.ID, "pool", sn.Pool)
	}
	f.commit()
}

// Run keeps the node pools in step with the tenants, and the nodes'
// states with their records, until ctx ends.
func (f *Fleet) Run(ctx context.Context) {
	go f.watchNodes(ctx)
	for {
		snap := f.cfg.Store.Snapshot()
		changed := snap.TenantsChanged()
		f.SyncPools()
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// restore binds the live sandboxes the store places on node id.
func (f *Fleet) restore(id string) {
	token := ""
	for {
		page, next, err := f.cfg.Store.Snapshot().Sandboxes(store.SandboxFilter{Node: id, Limit: 1000, PageToken: token})
		if err != nil {
			f.log.Error("restore placements", "node", id, "error", err)
			return
		}
		for _, sb := range page {
			if store.IsTerminal(sb.State) {
				continue
			}
			if _, err := f.sched.Restore(request(sb), id); err != nil && !errdefs.Is(err, errdefs.AlreadyExists) {
				f.log.Error("restore a placement", "node", id, "sandbox", sb.ID, "error", err)
			}
		}
		if next == "" {
			return
		}
		token = next
	}
}

// Leave marks a disconnected node down: it takes no new sandboxes, and
// its sandboxes keep their placements until they are destroyed or
// reported lost.
func (f *Fleet) Leave(id string) {
	f.mu.Lock()
	delete(f.waiting, id)
	f.mu.Unlock()
	if err := f.setStatus(id, scheduler.NodeDown); err != nil && !errdefs.IsNotFound(err) {
		f.log.Error("mark a node down", "node", id, "error", err)
	}
}

// Drain stops new placements on node id; Undrain starts them again.
func (f *Fleet) Drain(id string) error   { return f.setStatus(id, scheduler.NodeDraining) }
func (f *Fleet) Undrain(id string) error { return f.setStatus(id, scheduler.NodeUp) }

func (f *Fleet) setStatus(id string, st scheduler.NodeStatus) error {
	if err := f.sched.SetNodeStatus(id, st); err != nil {
		return err
	}
	f.commit()
	return nil
}

// request is a sandbox's scheduling request.
func request(sb *store.Sandbox) scheduler.Request {
	return scheduler.Request{
		SandboxID: sb.ID, Tenant: sb.Tenant,
		Size:        scheduler.Resources{CPUMillis: int64(sb.CPUs * 1000), MemoryMB: sb.MemoryMB, DiskMB: sb.DiskMB},
		Constraints: scheduler.NewConstraints(sb.Runtime, nil),
	}
}

// Place chooses the node of new sandbox sb (server.Placer). When no node
// has room it answers ResourceExhausted at once, or, with wait > 0, parks
// the request in the scheduler and waits up to wait (and ctx) for
// capacity that fits it to free: the first parked is the first placed.
func (f *Fleet) Place(ctx context.Context, sb *store.Sandbox, wait time.Duration) (func(), error) {
	var p scheduler.Placement
	var err error
	if wait <= 0 {
		p, err = f.sched.Place(request(sb))
	} else {
		p, err = f.placeOrWait(ctx, sb, wait)
	}
	if err != nil {
		if errdefs.Is(err, errdefs.ResourceExhausted) {
			f.refused.Add(1)
			within := ""
			if wait > 0 {
				within = " within " + wait.String()
			}
			return nil, errdefs.New(errdefs.ResourceExhausted, "no node had room%s for a sandbox of %v CPUs, %d MB memory and %d MB disk on runtime %s: add nodes or free some",
				within, sb.CPUs, sb.MemoryMB, sb.DiskMB, sb.Runtime)
		}
		return nil, err
	}
	f.commit()
	f.placed.Add(1)
	sb.Node = p.NodeID
	return func() { f.release(p.Pool, sb.ID) }, nil
}

// placeOrWait places sb, parking it until a placement arrives (commit
// hands it over), wait passes or ctx ends. A request placed just as it
// gives up keeps its placement.
func (f *Fleet) placeOrWait(ctx context.Context, sb *store.Sandbox, wait time.Duration) (scheduler.Placement, error) {
	ch := make(chan scheduler.Placement, 1)
	f.wakeMu.Lock()
	f.woken[sb.ID] = ch // before parking: a wake may come at once
	f.wakeMu.Unlock()
	defer func() {
		f.wakeMu.Lock()
		delete(f.woken, sb.ID)
		f.wakeMu.Unlock()
	}()
	p, ticket, err := f.sched.PlaceOrPark(request(sb))
	if err != nil || ticket == nil {
		return p, err
	}
	f.log.Debug("no room: create parked", "sandbox", sb.ID, "wait", wait)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case p := <-ch:
		return p, nil
	case <-t.C:
	case <-ctx.Done():
	}
	if ticket.Cancel() {
		if err := ctx.Err(); err != nil {
			return scheduler.Placement{}, errdefs.Wrap(errdefs.Canceled, err, "wait for room for sandbox %s", sb.ID)
		}
		return scheduler.Placement{}, errdefs.New(errdefs.ResourceExhausted, "no node fits sandbox %s", sb.ID)
	}
	return <-ch, nil // placed meanwhile: the batch that holds it is being handed over
}

// commit publishes the scheduler's decisions and hands the placements of
// woken (parked) creates to their waiting Place calls.
func (f *Fleet) commit() {
	for _, b := range f.sched.Commit() {
		for _, p := range b.Placed {
			if !p.Woken {
				continue
			}
			f.wakeMu.Lock()
			ch, ok := f.woken[p.SandboxID]
			f.wakeMu.Unlock()
			if ok {
				ch <- p
				continue
			}
			// Nobody waits (cannot happen: a ticket is cancelled before
			// its waiter leaves); never leave capacity held.
			f.log.Error("a woken placement has no waiting create; released", "sandbox", p.SandboxID)
			f.release(p.Pool, p.SandboxID)
		}
	}
}

func (f *Fleet) release(pool, id string) {
	if err := f.sched.Release(pool, id); err != nil && !errdefs.IsNotFound(err) {
		f.log.Error("release a placement", "sandbox", id, "error", err)
	}
	f.commit()
}

// releaseSandbox frees the placement of sandbox id, wherever it is.
func (f *Fleet) releaseSandbox(id, nodeID string) {
	f.mu.RLock()
	m, ok := f.nodes[nodeID]
	f.mu.RUnlock()
	pool := scheduler.SharedPool
	if ok && m.node.Pool != "" {
		pool = m.node.Pool
	}
	f.release(pool, id)
}

// ID is the cluster's pseudo node ID.
func (f *Fleet) ID() string { return ID }

// member is node id, if it has joined.
func (f *Fleet) member(id string) (*member, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, ok := f.nodes[id]
	return m, ok
}

// nodeOf is the remote node that runs sandbox id.
func (f *Fleet) nodeOf(id string) (*noderpc.RemoteNode, *store.Sandbox, error) {
	sb, err := f.cfg.Store.Snapshot().Sandbox(id)
	if err != nil {
		return nil, nil, err
	}
	m, ok := f.connected(sb.Node)
	if !ok {
		return nil, sb, errdefs.New(errdefs.Unavailable, "sandbox %s is on node %q, which is not connected", id, sb.Node)
	}
	return m.remote, sb, nil
}

// connected is node id once it is joined and its session is up, waiting
// for it a while when it is on its way (see awaitNode).
func (f *Fleet) connected(id string) (*member, bool) {
	m, ok := f.member(id)
	if _, up := f.cfg.Sessions(id); !ok || !up {
		m, ok = f.awaitNode(id)
	}
	return m, ok
}

// joinWait bounds how long Runtime waits for nodes whose join is under way.
const joinWait = 5 * time.Second

// Runtimes is the union of the nodes' runtimes, by name; the default is
// the first node's default. Every create asks, so it is kept until a node
// joins.
func (f *Fleet) Runtimes() []node.RuntimeInfo {
	if rts := f.runtimes.Load(); rts != nil {
		return slices.Clone(*rts)
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	rts := f.unionRuntimes()
	f.runtimes.CompareAndSwap(nil, &rts) // a join meanwhile cleared it under f.mu, which is held here
	return slices.Clone(rts)
}

// unionRuntimes computes Runtimes; f.mu is held.
func (f *Fleet) unionRuntimes() []node.RuntimeInfo {
	ids := slices.Sorted(maps.Keys(f.nodes))
	var out []node.RuntimeInfo
	seen := map[string]bool{}
	for _, id := range ids {
		for _, rt := range f.nodes[id].info.Runtimes {
			if seen[rt.Name] {
				continue
			}
			seen[rt.Name] = true
			rt.Default = len(out) == 0
			out = append(out, rt)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Default && !out[j].Default })
	return out
}

// Runtime is one of Runtimes by name, "" the default.
func (f *Fleet) Runtime(name string) (node.RuntimeInfo, error) {
	rts := f.Runtimes()
	// A node that just connected is ready in the store a moment before it
	// has joined here: a create right after it waits for the join rather
	// than fail.
	for deadline := time.Now().Add(joinWait); len(rts) == 0 && f.joining.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		rts = f.Runtimes()
	}
	if len(rts) == 0 {
		return node.RuntimeInfo{}, errdefs.New(errdefs.Unavailable, "no node is connected: start den agent --server ... on a host")
	}
	if name == "" {
		return rts[0], nil
	}
	for _, rt := range rts {
		if rt.Name == name {
			return rt, nil
		}
	}
	names := make([]string, len(rts))
	for i, rt := range rts {
		names[i] = rt.Name
	}
	return node.RuntimeInfo{}, errdefs.New(errdefs.InvalidArgument, "runtime %q is on no connected node (the nodes have %v)", name, names)
}

// Resources are the connected nodes' CPUs and memory together.
func (f *Fleet) Resources() node.Resources {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var r node.Resources
	for _, m := range f.nodes {
		r.CPUs += m.info.Resources.CPUs
		r.MemoryMB += m.info.Resources.MemoryMB
		r.MemoryAvailableMB += m.info.Resources.MemoryAvailableMB
	}
	return r
}

// Start starts recorded sandbox id on the node its record names.
func (f *Fleet) Start(ctx context.Context, id string) (*store.Sandbox, error) {
	remote, sb, err := f.nodeOf(id)
	if err != nil {
		return nil, err
	}
	return remote.StartFrom(ctx, sb)
}

// StartClaimed starts new sandbox sb, placed by Place and not yet recorded,
// on its node, which records it with record once it runs
// (server.Claimer): one store write for the start, where a record first
// and then its running state are two, each replicated to every server. A
// failed start records nothing. It returns nil and no error when the
// node's agent predates the call: the caller records sb and calls Start.
func (f *Fleet) StartClaimed(ctx context.Context, sb *store.Sandbox, record func(*store.Sandbox) error) (*store.Sandbox, error) {
	if sb.Node == "" {
		return nil, nil // not placed here: the caller's path records it first
	}
	m, ok := f.connected(sb.Node)
	if !ok {
		return nil, errdefs.New(errdefs.Unavailable, "sandbox %s was placed on node %q, which is not connected", sb.ID, sb.Node)
	}
	return m.remote.StartNew(ctx, f.starts, sb, record)
}

// Destroy stops sandbox id on its node and frees its placement. A sandbox
// of a node that is gone has nothing left to stop once it is reported
// lost (failed): its record is removed here.
func (f *Fleet) Destroy(ctx context.Context, id string) error {
	remote, sb, err := f.nodeOf(id)
	switch {
	case err == nil:
		if err := remote.DestroyFrom(ctx, sb); err != nil {
			return err
		}
	case sb != nil && (sb.Node == "" || (sb.State == store.StateFailed && f.nodeGone(sb.Node))):
		// Nothing runs it any more: only the record is left.
		if err := f.cfg.Store.DeleteSandbox(ctx, id); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	default:
		return err
	}
	f.releaseSandbox(id, sb.Node)
	return nil
}

// nodeWait bounds how long a call waits for a node that is not down to
// connect here: after a failover the agents are on their way to the new
// leader, and a request waits for them rather than failing.
const nodeWait = 5 * time.Second

// awaitNode is node id once it is joined: its session may be up with the
// join still under way (OnConnect joins in the background), or the agent
// may be reconnecting. A node that is down is not waited for.
func (f *Fleet) awaitNode(id string) (*member, bool) {
	deadline := time.Now().Add(nodeWait)
	for {
		_, up := f.cfg.Sessions(id)
		m, ok := f.member(id)
		if up && !ok {
			if rec, err := f.cfg.Store.Snapshot().Node(id); err == nil && f.Join(context.Background(), specOf(rec)) == nil {
				f.applyState(rec)
			}
			m, ok = f.member(id)
		}
		if up && ok {
			return m, true
		}
		if f.nodeGone(id) || time.Now().After(deadline) {
			return m, ok && up
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nodeGone reports whether node id is down or unknown: what it ran is
// lost. A node that is back (ready, reconnecting to this server) may
// still run a sandbox the store reported lost; destroying that takes the
// node.
func (f *Fleet) nodeGone(id string) bool {
	rec, err := f.cfg.Store.Snapshot().Node(id)
	return errdefs.IsNotFound(err) || (err == nil && rec.State == store.NodeDown)
}

// Suspend saves and stops sandbox id on its node.
func (f *Fleet) Suspend(ctx context.Context, id string) (*store.Sandbox, error) {
	remote, _, err := f.nodeOf(id)
	if err != nil {
		return nil, err
	}
	return remote.Suspend(ctx, id)
}

// Resume brings sandbox id back on its node.
func (f *Fleet) Resume(ctx context.Context, id string) (*store.Sandbox, error) {
	remote, _, err := f.nodeOf(id)
	if err != nil {
		return nil, err
	}
	return remote.Resume(ctx, id)
}

// SetNetwork replaces sandbox id's egress policy on its node.
func (f *Fleet) SetNetwork(ctx context.Context, id string, pol store.NetworkPolicy) (*store.Sandbox, error) {
	remote, _, err := f.nodeOf(id)
	if err != nil {
		return nil, err
	}
	return remote.SetNetwork(ctx, id, pol)
}

// CreateSnapshot saves sandbox rec.Sandbox on its node; the snapshot
// lives on that node.
func (f *Fleet) CreateSnapshot(ctx context.Context, rec *store.SandboxSnapshot) (*store.SandboxSnapshot, error) {
	remote, sb, err := f.nodeOf(rec.Sandbox)
	if err != nil {
		return nil, err
	}
	c := *rec
	c.Node = sb.Node
	return remote.CreateSnapshot(ctx, &c)
}

// DeleteSnapshot removes snapshot id on the node that holds it.
func (f *Fleet) DeleteSnapshot(ctx context.Context, id string) error {
	rec, err := f.cfg.Store.Snapshot().SandboxSnapshot(id)
	if err != nil {
		return err
	}
	m, ok := f.member(rec.Node)
	if !ok {
		return errdefs.New(errdefs.Unavailable, "snapshot %s is on node %q, which is not connected", id, rec.Node)
	}
	return m.remote.DeleteSnapshot(ctx, id)
}

// StartClones starts recorded sandboxes ids as clones of snapshot snapID
// on the node that holds the snapshot: their records move there first
// (they were written before the snapshot's node was known), and their
// placements are bound to it.
func (f *Fleet) StartClones(ctx context.Context, snapID string, ids []string) ([]*store.Sandbox, error) {
	rec, err := f.cfg.Store.Snapshot().SandboxSnapshot(snapID)
	if err != nil {
		return nil, err
	}
	m, ok := f.member(rec.Node)
	if !ok {
		return nil, errdefs.New(errdefs.Unavailable, "snapshot %s is on node %q, which is not connected", snapID, rec.Node)
	}
	for _, id := range ids {
		sb, err := f.cfg.Store.Snapshot().Sandbox(id)
		if err != nil {
			return nil, err
		}
		if sb.Node != rec.Node {
			if f.sched.Release(m.node.Pool, id) == nil {
				f.commit()
			}
			sb.Node = rec.Node
			if err := f.cfg.Store.UpdateSandbox(ctx, sb); err != nil {
				return nil, err
			}
		}
		if _, err := f.sched.Restore(request(sb), rec.Node); err != nil && !errdefs.Is(err, errdefs.AlreadyExists) {
			return nil, err
		}
	}
	f.commit()
	return m.remote.StartClones(ctx, snapID, ids)
}

// DialGuest opens a stream to sandbox id's guest agent through its node.
func (f *Fleet) DialGuest(ctx context.Context, id string) (net.Conn, error) {
	remote, _, err := f.nodeOf(id)
	if err != nil {
		return nil, err
	}
	return remote.DialGuest(ctx, id)
}

// Stats reads sandbox id's resource use on its node.
func (f *Fleet) Stats(ctx context.Context, id string) (driver.Stats, error) {
	remote, _, err := f.nodeOf(id)
	if err != nil {
		return driver.Stats{}, err
	}
	return remote.Stats(ctx, id)
}

// PoolStatus merges the warm pools the nodes reported when they joined.
func (f *Fleet) PoolStatus() map[string]node.PoolState {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := map[string]node.PoolState{}
	for _, m := range f.nodes {
		for id, ps := range m.info.Pools {
			cur := out[id]
			cur.Ready += ps.Ready
			if cur.Waiting == "" {
				cur.Waiting = ps.Waiting
			}
			out[id] = cur
		}
	}
	return out
}

// PoolMemoryBudgetMB is the nodes' pool budgets together.
func (f *Fleet) PoolMemoryBudgetMB() (int64, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var sum int64
	for _, m := range f.nodes {
		sum += m.info.PoolBudgetMB
	}
	return sum, nil
}
