package store

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
)

// A raft snapshot is a stream of JSON values: a header, then one record per
// object. Unknown record kinds are skipped on restore so an older binary can
// read a newer snapshot's known tables.
const snapshotVersion = 1

type snapshotHeader struct {
	Version int `json:"version"`
	// Applied is the index of the last command the snapshot includes
	// (older binaries leave it 0 and skip it).
	Applied uint64 `json:"applied,omitempty"`
}

// snapshotRecord holds exactly one object.
type snapshotRecord struct {
	Sandbox *Sandbox `json:"sandbox,omitempty"`
	APIKey  *APIKey  `json:"api_key,omitempty"`
	// SandboxSnapshot is a snapshot object (older binaries skip it).
	SandboxSnapshot *SandboxSnapshot `json:"sandbox_snapshot,omitempty"`
	// Pool is a warm pool (older binaries skip it).
	Pool *Pool `json:"pool,omitempty"`
	// Tenant is a tenant record (older binaries skip it).
	Tenant *Tenant `json:"tenant,omitempty"`
	// SSHKey is a tenant's SSH public key (older binaries skip it).
	SSHKey *SSHKey `json:"ssh_key,omitempty"`
	// JoinToken and Node are cluster membership (older binaries skip
	// them).
	JoinToken *JoinToken `json:"join_token,omitempty"`
	Node      *Node      `json:"node,omitempty"`
	// ClusterCA is the cluster's CA (older binaries skip it).
	ClusterCA *ClusterCA `json:"cluster_ca,omitempty"`
}

// tables lists every table a raft snapshot holds, in write order.
var tables = []string{tableSandboxes, tableAPIKeys, tableSnapshots, tablePools, tableTenants, tableSSHKeys, tableJoinTokens, tableNodes, tableClusterCA}

// Snapshot implements raft.FSM. It is O(1): Persist writes a frozen copy of
// the database while Apply goes on.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	applied, _ := f.appliedIndex()
	return &fsmSnapshot{db: f.db.Snapshot(), applied: applied}, nil
}

type fsmSnapshot struct {
	db      *memdb.MemDB
	applied uint64
}

// Persist implements raft.FSMSnapshot.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		return errors.Join(fmt.Errorf("persist snapshot: %w", err), sink.Cancel())
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return nil
}

func (s *fsmSnapshot) write(w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(snapshotHeader{Version: snapshotVersion, Applied: s.applied}); err != nil {
		return err
	}
	txn := s.db.Txn(false)
	for _, table := range tables {
		it, err := txn.Get(table, indexID)
		if err != nil {
			return fmt.Errorf("read %s: %w", table, err)
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			var rec snapshotRecord
			switch o := raw.(type) {
			case *Sandbox:
				rec.Sandbox = o
			case *APIKey:
				rec.APIKey = o
			case *SandboxSnapshot:
				rec.SandboxSnapshot = o
			case *Pool:
				rec.Pool = o
			case *Tenant:
				rec.Tenant = o
			case *SSHKey:
				rec.SSHKey = o
			case *JoinToken:
				rec.JoinToken = o
			case *Node:
				rec.Node = o
			case *ClusterCA:
				rec.ClusterCA = o
			}
			if err := enc.Encode(rec); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() {}

// Restore implements raft.FSM. It replaces the whole state in one write
// transaction, so watchers of the old state fire and snapshots taken before
// keep their view.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	txn := f.db.Txn(true)
	defer txn.Abort()
	if err := clearTables(txn); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	applied, err := readSnapshot(txn, bufio.NewReader(rc))
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	txn.Commit()
	f.setApplied(applied)
	return nil
}

func clearTables(txn *memdb.Txn) error {
	for _, table := range tables {
		if _, err := txn.DeleteAll(table, indexID); err != nil {
			return fmt.Errorf("clear %s: %w", table, err)
		}
	}
	return nil
}

// readSnapshot inserts a snapshot's records and returns its applied index.
func readSnapshot(txn *memdb.Txn, r io.Reader) (uint64, error) {
	dec := json.NewDecoder(r)
	var h snapshotHeader
	if err := dec.Decode(&h); err != nil {
		return 0, fmt.Errorf("read header: %w", err)
	}
	if h.Version != snapshotVersion {
		return 0, fmt.Errorf("unknown snapshot version %d", h.Version)
	}
	for {
		var rec snapshotRecord
		err := dec.Decode(&rec)
		if errors.Is(err, io.EOF) {
			return h.Applied, nil
		}
		if err != nil {
			return 0, fmt.Errorf("read record: %w", err)
		}
		if err := insertRecord(txn, rec); err != nil {
			return 0, err
		}
	}
}

func insertRecord(txn *memdb.Txn, rec snapshotRecord) error {
	switch {
	case rec.Sandbox != nil:
		return txn.Insert(tableSandboxes, rec.Sandbox)
	case rec.APIKey != nil:
		return txn.Insert(tableAPIKeys, rec.APIKey)
	case rec.SandboxSnapshot != nil:
		return txn.Insert(tableSnapshots, rec.SandboxSnapshot)
	case rec.Pool != nil:
		return txn.Insert(tablePools, rec.Pool)
	case rec.Tenant != nil:
		return txn.Insert(tableTenants, rec.Tenant)
	case rec.SSHKey != nil:
		return txn.Insert(tableSSHKeys, rec.SSHKey)
	case rec.JoinToken != nil:
		return txn.Insert(tableJoinTokens, rec.JoinToken)
	case rec.Node != nil:
		return txn.Insert(tableNodes, rec.Node)
	case rec.ClusterCA != nil:
		return txn.Insert(tableClusterCA, rec.ClusterCA)
	}
	return nil
}
