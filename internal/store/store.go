package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/denhq/den/internal/errdefs"
)

// Store is den's replicated state. It is safe for concurrent use. Writes go
// through raft and return once applied locally; reads use [Store.Snapshot].
type Store struct {
	id    string
	fsm   *fsm
	raft  *raft.Raft
	batch *batcher // group commit into raft, used while this server leads
	bolt  *raftboltdb.BoltStore
	trans *raft.InmemTransport // den up's; nil in a cluster
	// cluster is the networked part of a cluster server; nil for den up.
	cluster *cluster

	mu        sync.Mutex // orders Watch's wg.Add before Close's wg.Wait
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	done      chan struct{} // closed by Close; stops watchers
	wg        sync.WaitGroup
}

// openState is what Open builds step by step; undo tears down what exists.
type openState struct {
	cfg      Config
	log      *slog.Logger
	fsm      *fsm
	bolt     *raftboltdb.BoltStore
	snaps    raft.SnapshotStore
	trans    *raft.InmemTransport // den up
	cluster  *cluster             // a cluster server
	hasState bool
	raft     *raft.Raft
	batch    *batcher
}

type openStep struct {
	name string
	fn   func(context.Context) error
}

// Open opens the state in cfg.Dir and recovers snapshot and log.
//
// Without cfg.Cluster (den up) it bootstraps a one-voter cluster on the
// first start, then waits until this node leads and has applied every
// committed entry.
//
// With cfg.Cluster it starts the cluster port, forms or joins the cluster
// on the first start (see ClusterConfig), then waits until a leader is
// known and this server has applied every entry committed before.
//
// ctx bounds the waits; when it ends first Open fails with Unavailable.
// Only one Store may have a Dir open at a time (the bolt file is locked).
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "open store")
	}
	st := &openState{cfg: cfg, log: cfg.logger()}
	steps := []openStep{
		{"create dir", st.createDir},
		{"open log store", st.openBolt},
		{"open snapshot store", st.openSnapshots},
		{"new fsm", st.newFSM},
		{"bootstrap", st.bootstrap},
		{"start raft", st.startRaft},
		{"wait for leadership", st.waitLeader},
	}
	if cfg.Cluster != nil {
		steps = []openStep{
			{"create dir", st.createDir},
			{"open log store", st.openBolt},
			{"open snapshot store", st.openSnapshots},
			{"new fsm", st.newFSM},
			{"start cluster port", st.startClusterPort},
			{"start raft", st.startRaft},
			{"serve cluster rpcs", st.serveClusterRPCs},
			{"form cluster", st.formCluster},
			{"catch up with the leader", st.syncWithLeader},
		}
	}
	for _, step := range steps {
		if err := step.fn(ctx); err != nil {
			st.undo()
			return nil, fmt.Errorf("open store %s: %s: %w", cfg.Dir, step.name, err)
		}
	}
	st.log.Info("store open", "dir", cfg.Dir, "node_id", cfg.NodeID,
		"last_index", st.raft.LastIndex())
	return &Store{
		id: cfg.NodeID, fsm: st.fsm, raft: st.raft, batch: st.batch, bolt: st.bolt, trans: st.trans,
		cluster: st.cluster, done: make(chan struct{}),
	}, nil
}

// startClusterPort serves the cluster port and builds raft's network
// transport over it.
func (st *openState) startClusterPort(context.Context) error {
	has, err := raft.HasExistingState(st.bolt, st.bolt, st.snaps)
	if err != nil {
		return err
	}
	st.hasState = has
	st.cluster = newCluster(st.cfg, st.fsm, st.log)
	return nil
}

func (st *openState) serveClusterRPCs(context.Context) error {
	st.cluster.raft, st.cluster.batch = st.raft, st.batch
	st.cluster.rpc.serve()
	return nil
}

func (st *openState) formCluster(ctx context.Context) error {
	return st.cluster.form(ctx, st.hasState)
}

func (st *openState) syncWithLeader(ctx context.Context) error {
	return st.cluster.syncWithLeader(ctx)
}

func (st *openState) createDir(context.Context) error {
	return os.MkdirAll(st.cfg.Dir, 0o700)
}

func (st *openState) openBolt(context.Context) error {
	b, err := raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(st.cfg.Dir, "raft.db"),
		// Fail rather than hang when another process holds the file.
		BoltOptions: &bbolt.Options{Timeout: time.Second},
	})
	if err != nil {
		return err
	}
	st.bolt = b
	return nil
}

func (st *openState) openSnapshots(context.Context) error {
	s, err := raft.NewFileSnapshotStoreWithLogger(st.cfg.Dir, raftSnapshotsRetained,
		newHclogAdapter(st.log, "raft-snapshots"))
	if err != nil {
		return err
	}
	st.snaps = s
	return nil
}

func (st *openState) newFSM(context.Context) error {
	f, err := newFSM(st.log)
	st.fsm = f
	return err
}

// bootstrap writes the initial one-voter configuration on first start.
// The in-memory transport's address is the node ID, so the configuration
// stays valid across restarts.
func (st *openState) bootstrap(context.Context) error {
	_, st.trans = raft.NewInmemTransport(raft.ServerAddress(st.cfg.NodeID))
	has, err := raft.HasExistingState(st.bolt, st.bolt, st.snaps)
	if err != nil || has {
		return err
	}
	conf := raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter,
		ID:       raft.ServerID(st.cfg.NodeID),
		Address:  st.trans.LocalAddr(),
	}}}
	return raft.BootstrapCluster(st.cfg.raftConfig(), st.bolt, st.bolt, st.snaps, st.trans, conf)
}

func (st *openState) startRaft(context.Context) error {
	var trans raft.Transport = st.trans
	if st.cluster != nil {
		trans = st.cluster.trans
	}
	// The newest entries stay in memory: the leader reads each entry
	// back to send it to the followers, and from bolt that is a read
	// and a msgpack decode per entry per follower.
	logs, err := raft.NewLogCache(raftLogCache, st.bolt)
	if err != nil {
		return err
	}
	r, err := raft.NewRaft(st.cfg.raftConfig(), st.fsm, logs, st.bolt, st.snaps, trans)
	if err != nil {
		return err
	}
	st.raft = r
	st.batch = newBatcher(r)
	return nil
}

// waitLeader waits for leadership, then for a barrier so that every entry
// committed before this start is applied to the FSM.
func (st *openState) waitLeader(ctx context.Context) error {
	for st.raft.State() != raft.Leader {
		select {
		case <-st.raft.LeaderCh():
		case <-ctx.Done():
			return errdefs.Wrap(errdefs.Unavailable, ctx.Err(), "no leader")
		}
	}
	return mapRaftErr(st.raft.Barrier(timeoutOf(ctx)).Error())
}

func (st *openState) undo() {
	if st.batch != nil {
		defer st.batch.close() // after raft's shutdown fails what it holds
	}
	if st.raft != nil {
		if err := st.raft.Shutdown().Error(); err != nil {
			st.log.Warn("undo open: raft shutdown", "error", err)
		}
	}
	if st.trans != nil {
		st.trans.Close()
	}
	if st.cluster != nil {
		if err := st.cluster.close(); err != nil {
			st.log.Warn("undo open: close cluster port", "error", err)
		}
	} else if st.cfg.Cluster != nil {
		st.cfg.Cluster.Listener.Close() // Open owns it
	}
	if st.bolt != nil {
		if err := st.bolt.Close(); err != nil {
			st.log.Warn("undo open: close log store", "error", err)
		}
	}
}

// Close stops watchers and raft and closes the log store. Writes after
// Close fail with Unavailable; snapshots taken before stay readable. Close
// is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed.Store(true)
		close(s.done)
		s.mu.Unlock()
		s.wg.Wait()
		err := s.raft.Shutdown().Error()
		s.batch.close()
		if s.trans != nil {
			s.trans.Close()
		}
		if s.cluster != nil {
			err = errors.Join(err, s.cluster.close())
		}
		s.closeErr = errors.Join(err, s.bolt.Close())
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("close store: %w", s.closeErr)
		}
	})
	return s.closeErr
}

// timeoutOf turns ctx's deadline into a raft timeout; 0 means none.
func timeoutOf(ctx context.Context) time.Duration {
	d, ok := ctx.Deadline()
	if !ok {
		return 0
	}
	if left := time.Until(d); left > 0 {
		return left
	}
	return time.Nanosecond
}

// mapRaftErr classifies raft's errors: everything that means "not now,
// maybe elsewhere" is Unavailable.
func mapRaftErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrRaftShutdown), errors.Is(err, raft.ErrEnqueueTimeout),
		errors.Is(err, raft.ErrAbortedByRestore),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return errdefs.Wrap(errdefs.Unavailable, err, "state store unavailable")
	}
	return err
}
