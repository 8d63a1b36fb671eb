package fleet

import (
	"context"
	"time"

	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/scheduler"
	"github.com/denhq/den/internal/store"
)

// joinTimeout bounds a joining node's info call.
const joinTimeout = 30 * time.Second

// OnConnect is the node listener's hook for a node's new session: the
// node joins the fleet with the pool, labels and capacity of its record.
// It returns at once (the listener must not wait); the join runs behind.
func (f *Fleet) OnConnect(nodeID string, _ *nodelink.Session) {
	f.joining.Add(1)
	go func() {
		defer f.joining.Add(-1)
		ctx, cancel := context.WithTimeout(context.Background(), joinTimeout)
		defer cancel()
		rec, err := f.cfg.Store.Snapshot().Node(nodeID)
		if err != nil {
			f.log.Error("node connected without a record", "node", nodeID, "error", err)
			return
		}
		if err := f.Join(ctx, specOf(rec)); err != nil {
			f.log.Error("node join", "node", nodeID, "error", err)
			return
		}
		f.applyState(rec)
	}()
}

// OnDisconnect is the hook for a session that ended: the node leaves,
// unless it has a newer session already (a reconnect).
func (f *Fleet) OnDisconnect(nodeID string, s *nodelink.Session) {
	if cur, ok := f.cfg.Sessions(nodeID); ok && cur != s {
		return
	}
	f.Leave(nodeID)
}

// specOf is what the scheduler needs of a node record.
func specOf(rec *store.Node) NodeSpec {
	return NodeSpec{ID: rec.ID, Pool: rec.Pool, Labels: rec.Labels, Status: statusOf(rec), Capacity: scheduler.Resources{
		CPUMillis: int64(rec.Capacity.CPUs * 1000), MemoryMB: rec.Capacity.MemoryMB, DiskMB: diskOrUnbounded(rec.Capacity.DiskMB),
	}}
}

// statusOf is what a node record allows: draining and down nodes take
// nothing new.
func statusOf(rec *store.Node) scheduler.NodeStatus {
	switch {
	case rec.State == store.NodeDown:
		return scheduler.NodeDown
	case !rec.Schedulable():
		return scheduler.NodeDraining
	}
	return scheduler.NodeUp
}

// diskOrUnbounded: a node that reports no disk is not bound by it.
func diskOrUnbounded(mb int64) int64 {
	if mb <= 0 {
		return 1 << 40
	}
	return mb
}

// applyState gives the scheduler a joined node's state from its record:
// draining and down nodes take nothing new.
func (f *Fleet) applyState(rec *store.Node) {
	if _, ok := f.member(rec.ID); !ok {
		return
	}
	f.setStatus(rec.ID, statusOf(rec))
}

// watchNodes applies the node records' states (a drain, a node marked
// down) to the joined nodes until ctx ends.
func (f *Fleet) watchNodes(ctx context.Context) {
	for {
		snap := f.cfg.Store.Snapshot()
		changed := snap.NodesChanged()
		if recs, err := snap.Nodes(); err == nil {
			for _, rec := range recs {
				f.applyState(rec)
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}
