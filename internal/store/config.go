package store

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// Config configures a Store. Without Cluster the Store is a single raft
// voter on an in-memory transport (`den up`); with Cluster it is one server
// of a 1, 3 or 5 server cluster over mutual TLS (`den server`).
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
	// Cluster makes the Store a server of a networked raft cluster; nil
	// keeps the single in-memory voter.
	Cluster *ClusterConfig
}

// ClusterConfig is what a Store needs to be one server of a cluster. The
// servers talk over one cluster port each (see internal/clustermux):
// raft's stream, write forwarding and joins, all mutual TLS with server
// certificates of one cluster CA.
type ClusterConfig struct {
	// Listener is the bound cluster port (plain TCP: the Store does the
	// TLS). The Store owns it from Open on and closes it on Close.
	// Required.
	Listener net.Listener
	// Advertise is the host:port the other servers dial to reach
	// Listener; it is this server's raft address and must be stable
	// across restarts. Required.
	Advertise string
	// ServerTLS accepts peers (pki.CA.ServerConfig with role server) and
	// ClientTLS dials them (pki.ClientConfig with this server's
	// certificate). Required.
	ServerTLS, ClientTLS *tls.Config
	// BootstrapExpect is the size of the first cluster: 1, 3 or 5. A
	// fresh server that knows that many servers (itself, Join's and the
	// ones that contacted it) bootstraps raft with exactly them; every one
	// of them computes the same configuration. 0: this server never
	// bootstraps and only joins an existing cluster through Join.
	BootstrapExpect int
	// Join are cluster addresses of other servers. A fresh server asks
	// them for the others (to bootstrap) or for the leader, which adds it
	// as a voter. A server with existing state ignores Join: raft knows
	// its peers.
	Join []string
	// LeaderWait bounds how long a write waits for a leader to be elected
	// before it fails Unavailable; 0 means DefaultLeaderWait.
	LeaderWait time.Duration
}

// DefaultLeaderWait is how long a write waits for a leader by default: a
// few election rounds.
const DefaultLeaderWait = 10 * time.Second

func (c *ClusterConfig) validate() error {
	switch {
	case c.Listener == nil:
		return fmt.Errorf("store cluster config: Listener is required")
	case c.Advertise == "":
		return fmt.Errorf("store cluster config: Advertise is required")
	case c.ServerTLS == nil || c.ClientTLS == nil:
		return fmt.Errorf("store cluster config: ServerTLS and ClientTLS are required")
	case c.BootstrapExpect != 0 && c.BootstrapExpect != 1 && c.BootstrapExpect != 3 && c.BootstrapExpect != 5:
		return fmt.Errorf("store cluster config: BootstrapExpect must be 1, 3 or 5, got %d", c.BootstrapExpect)
	case c.BootstrapExpect == 0 && len(c.Join) == 0:
		return fmt.Errorf("store cluster config: set BootstrapExpect to form a cluster, or Join to join one")
	}
	if _, _, err := net.SplitHostPort(c.Advertise); err != nil {
		return fmt.Errorf("store cluster config: Advertise %q is not host:port", c.Advertise)
	}
	for _, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return fmt.Errorf("store cluster config: Join address %q is not host:port", j)
		}
	}
	return nil
}

func (c *ClusterConfig) leaderWait() time.Duration {
	if c.LeaderWait > 0 {
		return c.LeaderWait
	}
	return DefaultLeaderWait
}

// Validate reports whether cfg is usable.
func (cfg Config) Validate() error {
	if cfg.Dir == "" {
		return fmt.Errorf("store config: Dir is required")
	}
	if cfg.NodeID == "" {
		return fmt.Errorf("store config: NodeID is required")
	}
	if cfg.Cluster != nil {
		return cfg.Cluster.validate()
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
// A cluster uses the LAN timings below instead.
const (
	raftHeartbeatTimeout = 50 * time.Millisecond
	raftElectionTimeout  = 50 * time.Millisecond
	raftLeaderLease      = 50 * time.Millisecond

	// A snapshot every 16384 entries bounds replay on start (a second or
	// two); a snapshot writes the whole state, which with 100,000
	// sandboxes is tens of MB on every server, so not more often than
	// that. Keeping 10240 trailing entries lets a lagging follower catch
	// up from the log rather than a snapshot.
	raftSnapshotThreshold = 16384
	raftTrailingLogs      = 10240
	raftSnapshotInterval  = 120 * time.Second
	raftSnapshotsRetained = 2
	// raftLogCache is how many of the newest log entries stay in memory
	// (Consul keeps 512).
	raftLogCache = 512
)

// Raft tuning for a LAN cluster. A follower stands for election after
// hearing nothing from the leader for a random 1-2 x HeartbeatTimeout, so a
// dead leader is replaced in ~0.5-1 s plus one election round. A leader
// steps down when it has not heard from a quorum within LeaderLeaseTimeout;
// that does not speed up failover (followers detect a dead leader), so it
// is as long as raft allows (HeartbeatTimeout). With 250 ms, den bench
// failover on a 2-vCPU VM at load 8 saw the new leader change twice in 20
// trials while the killed server restarted (its one live follower
// stalling past the lease is the likely cause); with 500 ms, none in 40.
// The values leave a loaded machine (GC pauses, a busy 2-core VM) ten times
// the heartbeat interval (HeartbeatTimeout/10) before anyone suspects a
// leader, which keeps elections from flapping; see docs/benchmarks.md
// (den bench failover) for what they give.
//
// CommitTimeout is how long an idle leader waits (1-2 x) before it sends
// followers the commit index. A write forwarded by a follower returns only
// once that follower has applied it, so it waits for that message. On the
// 2-vCPU VM (docs/benchmarks.md), one write at a time on a follower
// (BenchmarkClusterWrite) took 83 / 18-21 / 11 ms with 50 (raft's
// default) / 10 / 5 ms, and the busiest server of an idle 3-server cluster
// used about 3 / 6 / 11% of a core. 10 ms is the middle.
const (
	clusterHeartbeatTimeout = 500 * time.Millisecond
	clusterElectionTimeout  = 500 * time.Millisecond
	clusterLeaderLease      = 500 * time.Millisecond
	clusterCommitTimeout    = 10 * time.Millisecond
)

func (cfg Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = raftHeartbeatTimeout
	rc.ElectionTimeout = raftElectionTimeout
	rc.LeaderLeaseTimeout = raftLeaderLease
	if cfg.Cluster != nil {
		rc.HeartbeatTimeout = clusterHeartbeatTimeout
		rc.ElectionTimeout = clusterElectionTimeout
		rc.LeaderLeaseTimeout = clusterLeaderLease
		rc.CommitTimeout = clusterCommitTimeout
	}
	rc.SnapshotThreshold = raftSnapshotThreshold
	rc.TrailingLogs = raftTrailingLogs
	rc.SnapshotInterval = raftSnapshotInterval
	rc.Logger = newHclogAdapter(cfg.logger(), "raft")
	return rc
}
