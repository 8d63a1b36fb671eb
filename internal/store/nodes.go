package store

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/denhq/den/internal/errdefs"
)

// Node states. A node is ready while an agent holds a link to a server
// and heartbeats on it, down when that stopped for the grace TTL, and
// draining while it is connected but an operator asked that no new
// sandboxes go to it.
const (
	NodeReady    = "ready"
	NodeDown     = "down"
	NodeDraining = "draining"
)

// ReasonNodeLost is the reason of a sandbox that failed because its node
// went down. Such sandboxes are reported, never rescheduled.
const ReasonNodeLost = "node lost"

// Node is a host running den agent, as the cluster knows it. Its
// heartbeats stay in the memory of the server it is connected to; only
// its transitions are written here. A data contract persisted in the raft
// log: add fields, never rename or retype them.
type Node struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Pool string `json:"pool,omitempty"`
	// Labels are the agent's own labels with TokenLabels over them.
	Labels map[string]string `json:"labels,omitempty"`
	// TokenLabels came with the join token; the agent cannot change them.
	TokenLabels map[string]string `json:"token_labels,omitempty"`
	Capacity    NodeCapacity      `json:"capacity"`
	Runtimes    []string          `json:"runtimes,omitempty"`
	Version     string            `json:"version,omitempty"`
	// Token is the ID of the join token that admitted the node.
	Token string `json:"token,omitempty"`

	// State is NodeReady, NodeDown or NodeDraining. Draining is the
	// operator's wish and outlives a disconnection: a draining node that
	// comes back is draining again.
	State    string `json:"state"`
	Draining bool   `json:"draining,omitempty"`
	// Server is the ID of the server the node is (or was last) connected
	// to; Epoch is the raft index of that connection's start, so a
	// server that lost the node may only mark down the connection it had.
	Server string `json:"server,omitempty"`
	Epoch  uint64 `json:"epoch,omitempty"`

	RegisteredAt time.Time `json:"registered_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	ModifyIndex  uint64    `json:"modify_index"`
}

// NodeCapacity is what a node offers to sandboxes.
type NodeCapacity struct {
	CPUs     float64 `json:"cpus"`
	MemoryMB int64   `json:"memory_mb"`
	DiskMB   int64   `json:"disk_mb,omitempty"`
}

// Clone returns a deep copy of n.
func (n *Node) Clone() *Node {
	if n == nil {
		return nil
	}
	c := *n
	c.Labels = maps.Clone(n.Labels)
	c.TokenLabels = maps.Clone(n.TokenLabels)
	c.Runtimes = slices.Clone(n.Runtimes)
	return &c
}

// Schedulable reports whether new sandboxes may be placed on n.
func (n *Node) Schedulable() bool { return n.State == NodeReady && !n.Draining }

const (
	tableNodes = "nodes"
	indexNode  = "node" // sandboxes by Node
)

func nodesTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableNodes,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
		},
	}
}

// sandboxNodeIndex indexes sandboxes by the node that runs them.
func sandboxNodeIndex() *memdb.IndexSchema {
	return &memdb.IndexSchema{Name: indexNode, AllowMissing: true, Indexer: &memdb.StringFieldIndex{Field: "Node"}}
}

// joinNodeCmd is the body of join_node: one use of a token and the new
// node's record, in one entry.
type joinNodeCmd struct {
	TokenID   string    `json:"token_id"`
	TokenHash string    `json:"token_hash"`
	Now       time.Time `json:"now"`
	Node      *Node     `json:"node"`
}

// nodeUpCmd is the body of node_up: an agent's hello on a new connection.
type nodeUpCmd struct {
	ID string `json:"id"`
	// Pool is the pool the node says it is in; "" means any.
	Pool     string            `json:"pool,omitempty"`
	Server   string            `json:"server"`
	Now      time.Time         `json:"now"`
	Labels   map[string]string `json:"labels,omitempty"`
	Capacity NodeCapacity      `json:"capacity"`
	Runtimes []string          `json:"runtimes,omitempty"`
	Version  string            `json:"version,omitempty"`
}

// nodeDownCmd is the body of node_down.
type nodeDownCmd struct {
	ID    string    `json:"id"`
	Epoch uint64    `json:"epoch"`
	Now   time.Time `json:"now"`
}

// nodeDrainCmd is the body of set_node_draining.
type nodeDrainCmd struct {
	ID       string    `json:"id"`
	Draining bool      `json:"draining"`
	Now      time.Time `json:"now"`
}

func getNode(txn *memdb.Txn, id string) (*Node, error) {
	raw, err := txn.First(tableNodes, indexID, id)
	if err != nil {
		return nil, fmt.Errorf("get node %s: %w", id, err)
	}
	if raw == nil {
		return nil, errdefs.New(errdefs.NotFound, "node %s not found", id)
	}
	return raw.(*Node).Clone(), nil
}

func putNode(txn *memdb.Txn, index uint64, n *Node) error {
	n.ModifyIndex = index
	if err := txn.Insert(tableNodes, n); err != nil {
		return fmt.Errorf("insert node %s: %w", n.ID, err)
	}
	return nil
}

func applyJoinNode(txn *memdb.Txn, index uint64, body []byte) error {
	var c joinNodeCmd
	if err := decodeBody(cmdJoinNode, body, &c); err != nil {
		return err
	}
	n := c.Node
	if n == nil || n.ID == "" {
		return errdefs.New(errdefs.InvalidArgument, "node id is required")
	}
	tok, err := checkJoinToken(txn, c.TokenID, c.TokenHash, c.Now)
	if err != nil {
		return err
	}
	if tok.Role != "" {
		return errdefs.New(errdefs.PermissionDenied, "join token %s admits servers, not agents", tok.ID)
	}
	// A node ID names the node's key (see cluster): a second join of
	// the same ID is the same agent retrying, and costs no use.
	if old, err := txn.First(tableNodes, indexID, n.ID); err != nil || old != nil {
		if err != nil {
			return fmt.Errorf("apply join node %s: %w", n.ID, err)
		}
		return errdefs.New(errdefs.AlreadyExists, "node %s already exists", n.ID)
	}
	if err := useJoinToken(txn, index, tok); err != nil {
		return err
	}
	if tok.Pool != "" {
		if n.Pool != "" && n.Pool != tok.Pool {
			return errdefs.New(errdefs.PermissionDenied, "join token %s admits nodes to pool %q, not %q", tok.ID, tok.Pool, n.Pool)
		}
		n.Pool = tok.Pool
	}
	n.Token, n.TokenLabels = tok.ID, maps.Clone(tok.Labels)
	n.Labels = mergeLabels(n.Labels, n.TokenLabels)
	n.State, n.RegisteredAt, n.UpdatedAt = NodeDown, c.Now, c.Now
	return putNode(txn, index, n)
}

// mergeLabels is own with pinned over it.
func mergeLabels(own, pinned map[string]string) map[string]string {
	if len(own) == 0 && len(pinned) == 0 {
		return nil
	}
	out := maps.Clone(own)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, pinned)
	return out
}

func applyNodeUp(txn *memdb.Txn, index uint64, body []byte) error {
	var c nodeUpCmd
	if err := decodeBody(cmdNodeUp, body, &c); err != nil {
		return err
	}
	n, err := getNode(txn, c.ID)
	if err != nil {
		return err
	}
	if c.Pool != "" && c.Pool != n.Pool {
		return errdefs.New(errdefs.FailedPrecondition, "node %s is in pool %q, not %q: a node changes pools by joining again with a token of that pool", c.ID, n.Pool, c.Pool)
	}
	n.Labels = mergeLabels(c.Labels, n.TokenLabels)
	n.Capacity, n.Runtimes, n.Version = c.Capacity, c.Runtimes, c.Version
	n.State = NodeReady
	if n.Draining {
		n.State = NodeDraining
	}
	n.Server, n.Epoch, n.UpdatedAt = c.Server, index, c.Now
	return putNode(txn, index, n)
}

// applyNodeDown marks a node down if its connection is still the one of
// the epoch, and fails its live sandboxes with ReasonNodeLost.
func applyNodeDown(txn *memdb.Txn, index uint64, body []byte) error {
	var c nodeDownCmd
	if err := decodeBody(cmdNodeDown, body, &c); err != nil {
		return err
	}
	n, err := getNode(txn, c.ID)
	if err != nil {
		return err
	}
	if n.Epoch != c.Epoch {
		return errdefs.New(errdefs.Conflict, "node %s reconnected (epoch %d, not %d): not marking it down", c.ID, n.Epoch, c.Epoch)
	}
	if n.State == NodeDown {
		return nil
	}
	n.State, n.UpdatedAt = NodeDown, c.Now
	if err := putNode(txn, index, n); err != nil {
		return err
	}
	return failNodeSandboxes(txn, index, c.ID)
}

// failNodeSandboxes marks every live sandbox of node failed: node lost.
func failNodeSandboxes(txn *memdb.Txn, index uint64, node string) error {
	it, err := txn.Get(tableSandboxes, indexNode, node)
	if err != nil {
		return fmt.Errorf("sandboxes of node %s: %w", node, err)
	}
	var lost []*Sandbox
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if sb := raw.(*Sandbox); !IsTerminal(sb.State) {
			lost = append(lost, sb.Clone())
		}
	}
	// Inserted after the walk: memdb iterators do not survive writes to
	// the table they walk.
	for _, sb := range lost {
		sb.State, sb.Reason, sb.ModifyIndex = StateFailed, ReasonNodeLost, index
		if err := txn.Insert(tableSandboxes, sb); err != nil {
			return fmt.Errorf("fail sandbox %s of node %s: %w", sb.ID, node, err)
		}
	}
	return nil
}

func applySetNodeDraining(txn *memdb.Txn, index uint64, body []byte) error {
	var c nodeDrainCmd
	if err := decodeBody(cmdSetNodeDraining, body, &c); err != nil {
		return err
	}
	n, err := getNode(txn, c.ID)
	if err != nil {
		return err
	}
	n.Draining, n.UpdatedAt = c.Draining, c.Now
	switch {
	case n.State == NodeReady && c.Draining:
		n.State = NodeDraining
	case n.State == NodeDraining && !c.Draining:
		n.State = NodeReady
	}
	return putNode(txn, index, n)
}

// JoinNode consumes one use of join token tokenID, whose secret hashes
// to tokenHash, and records n as a new node (state down until its first
// hello), with the token's pool and labels. PermissionDenied when the
// token is unknown, wrong, expired or used up, or when n asks for another
// pool than the token's; AlreadyExists, without using the token, when a
// node of n.ID exists and the token is otherwise valid. n itself is not
// changed: read the record from a
// snapshot (on a cluster follower, once it has caught up).
func (s *Store) JoinNode(ctx context.Context, tokenID, tokenHash string, now time.Time, n *Node) error {
	if n == nil || n.ID == "" {
		return errdefs.New(errdefs.InvalidArgument, "join node: node id is required")
	}
	_, err := s.apply(ctx, cmdJoinNode, joinNodeCmd{TokenID: tokenID, TokenHash: tokenHash, Now: normalTime(now), Node: n.Clone()})
	return err
}

// NodeHello is what an agent reports when it connects.
type NodeHello struct {
	// Pool is the pool the node says it is in; "" means any.
	Pool     string
	Labels   map[string]string
	Capacity NodeCapacity
	Runtimes []string
	Version  string
}

// NodeUp records that node id connected to server: it is ready (or
// draining) again. It returns the connection's epoch, which NodeDown
// needs. NotFound when the node has no record (it was removed);
// FailedPrecondition when h names a pool other than the node's.
func (s *Store) NodeUp(ctx context.Context, id, server string, now time.Time, h NodeHello) (uint64, error) {
	return s.apply(ctx, cmdNodeUp, nodeUpCmd{ID: id, Pool: h.Pool, Server: server, Now: normalTime(now),
		Labels: h.Labels, Capacity: h.Capacity, Runtimes: h.Runtimes, Version: h.Version})
}

// NodeDown marks node id down, and its live sandboxes failed with
// ReasonNodeLost, if its current connection is still the one of epoch;
// Conflict when it reconnected since. Marking a down node down again is
// a no-op.
func (s *Store) NodeDown(ctx context.Context, id string, epoch uint64, now time.Time) error {
	_, err := s.apply(ctx, cmdNodeDown, nodeDownCmd{ID: id, Epoch: epoch, Now: normalTime(now)})
	return err
}

// SetNodeDraining sets or clears the draining mark of node id. NotFound
// when absent.
func (s *Store) SetNodeDraining(ctx context.Context, id string, draining bool, now time.Time) error {
	_, err := s.apply(ctx, cmdSetNodeDraining, nodeDrainCmd{ID: id, Draining: draining, Now: normalTime(now)})
	return err
}

// DeleteNode removes a node record; its certificate then admits it
// nowhere (a hello of a node without a record is refused). NotFound when
// absent.
func (s *Store) DeleteNode(ctx context.Context, id string) error {
	_, err := s.apply(ctx, cmdDeleteNode, idCmd{ID: id})
	return err
}

// Node returns the node with the ID; NotFound when absent.
func (sn *Snapshot) Node(id string) (*Node, error) {
	return getNode(sn.db.Txn(false), id)
}

// NodesChanged returns a channel that is closed once any node record is
// created, changed or deleted after sn was taken. The race-free wait
// loop is: take a snapshot, read it, wait on its channel, repeat.
func (sn *Snapshot) NodesChanged() <-chan struct{} {
	it, err := sn.db.Txn(false).Get(tableNodes, indexID)
	if err != nil {
		// Only on a schema bug: a closed channel makes the caller re-read.
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return it.WatchCh()
}

// Nodes lists every node ordered by ID.
func (sn *Snapshot) Nodes() ([]*Node, error) {
	it, err := sn.db.Txn(false).Get(tableNodes, indexID)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	var out []*Node
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Node).Clone())
	}
	return out, nil
}

// NodeSandboxes lists the sandboxes recorded on node id, terminal ones
// included.
func (sn *Snapshot) NodeSandboxes(id string) ([]*Sandbox, error) {
	it, err := sn.db.Txn(false).Get(tableSandboxes, indexNode, id)
	if err != nil {
		return nil, fmt.Errorf("sandboxes of node %s: %w", id, err)
	}
	var out []*Sandbox
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Sandbox).Clone())
	}
	return out, nil
}
