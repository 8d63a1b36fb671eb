package store

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"
)

// Config configures a Store. Today a Store is a single raft voter; peers and
// a network transport will be added here when den grows to 3-5 servers.
type Config struct {
	// Dir holds raft.db (raft log and stable store) and snapshots/. It is
	// created if missing. Required.
	Dir string
	// NodeID is this server's stable raft ID; it must not change across
	// restarts of the same Dir. Required.
	NodeID string
	// Logger receives the store's logs and raft's warnings and errors.
	// Nil discards.
	Logger *slog.Logger
}

// Validate reports whether cfg is usable.
func (cfg Config) Validate() error {
	if cfg.Dir == "" {
		return fmt.Errorf("store config: Dir is required")
	}
	if cfg.NodeID == "" {
		return fmt.Errorf("store config: NodeID is required")
	}
	return nil
}

func (cfg Config) logger() *slog.Logger {
	if cfg.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return cfg.Logger
}

// Raft tuning for a local single voter. A follower waits a random time
// between HeartbeatTimeout and twice that before standing for election; a
// lone voter then wins at once, so leadership comes within ~100 ms of start.
// Revisit when peers arrive: LAN clusters want ~500 ms-1 s.
const (
	raftHeartbeatTimeout = 50 * time.Millisecond
	raftElectionTimeout  = 50 * time.Millisecond
	raftLeaderLease      = 50 * time.Millisecond

	// A snapshot every 4096 entries bounds replay on start; keeping 4096
	// trailing entries lets a briefly lagging follower catch up from the
	// log rather than a snapshot.
	raftSnapshotThreshold = 4096
	raftTrailingLogs      = 4096
	raftSnapshotInterval  = 60 * time.Second
	raftSnapshotsRetained = 2
)

func (cfg Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = raftHeartbeatTimeout
	rc.ElectionTimeout = raftElectionTimeout
	rc.LeaderLeaseTimeout = raftLeaderLease
	rc.SnapshotThreshold = raftSnapshotThreshold
	rc.TrailingLogs = raftTrailingLogs
	rc.SnapshotInterval = raftSnapshotInterval
	rc.Logger = newHclogAdapter(cfg.logger(), "raft")
	return rc
}
