package noderpc

import (
	"context"
	"net"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/store"
)

// Sessions finds the current node link of a node.
type Sessions func(nodeID string) (*nodelink.Session, bool)

// RemoteNode drives the node of an agent over its link: the sandbox
// operations of one node, seen from a server.
type RemoteNode struct {
	id       string
	sessions Sessions
}

// NewRemoteNode is the node nodeID, reached through sessions.
func NewRemoteNode(nodeID string, sessions Sessions) *RemoteNode {
	return &RemoteNode{id: nodeID, sessions: sessions}
}

// ID is the node's ID.
func (r *RemoteNode) ID() string { return r.id }

func (r *RemoteNode) session() (*nodelink.Session, error) {
	s, ok := r.sessions(r.id)
	if !ok {
		return nil, errdefs.New(errdefs.Unavailable, "node %s is not connected", r.id)
	}
	return s, nil
}

func (r *RemoteNode) call(ctx context.Context, method string, req, resp any) error {
	s, err := r.session()
	if err != nil {
		return err
	}
	return s.Call(ctx, method, req, resp)
}

// Info reads what the node has and runs.
func (r *RemoteNode) Info(ctx context.Context) (Info, error) {
	var info Info
	err := r.call(ctx, mInfo, struct{}{}, &info)
	return info, err
}

func (r *RemoteNode) sandboxCall(ctx context.Context, method, id string) (*store.Sandbox, error) {
	var sb store.Sandbox
	if err := r.call(ctx, method, idReq{ID: id}, &sb); err != nil {
		return nil, err
	}
	return &sb, nil
}

// StartFrom starts recorded sandbox sb.ID on the node. sb is the record as
// the server last read it, which the node uses instead of reading it back
// (node.Node.StartFrom); one with a zero ModifyIndex is read there.
func (r *RemoteNode) StartFrom(ctx context.Context, sb *store.Sandbox) (*store.Sandbox, error) {
	var out store.Sandbox
	if err := r.call(ctx, mStart, recordReq{ID: sb.ID, Record: sb}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DestroyFrom stops sandbox sb.ID and removes it, from the record as the
// server last read it (node.Node.DestroyFrom). Of the record only what a
// destroy reads is sent: the runtime and the index that says it is
// current. (An older agent writes the stopping state from it before it
// removes the record, and the fields that the server checks on that
// write, the tenant, node and token, are sent too.)
func (r *RemoteNode) DestroyFrom(ctx context.Context, sb *store.Sandbox) error {
	brief := &store.Sandbox{ID: sb.ID, Tenant: sb.Tenant, Node: sb.Node, Runtime: sb.Runtime, AccessToken: sb.AccessToken,
		State: sb.State, CreatedAt: sb.CreatedAt, ModifyIndex: sb.ModifyIndex}
	return r.call(ctx, mDestroy, recordReq{ID: sb.ID, Record: brief}, nil)
}

// Suspend saves and stops sandbox id.
func (r *RemoteNode) Suspend(ctx context.Context, id string) (*store.Sandbox, error) {
	return r.sandboxCall(ctx, mSuspend, id)
}

// Resume brings suspended sandbox id back.
func (r *RemoteNode) Resume(ctx context.Context, id string) (*store.Sandbox, error) {
	return r.sandboxCall(ctx, mResume, id)
}

// SetNetwork replaces sandbox id's egress policy.
func (r *RemoteNode) SetNetwork(ctx context.Context, id string, pol store.NetworkPolicy) (*store.Sandbox, error) {
	var sb store.Sandbox
	if err := r.call(ctx, mSetNetwork, networkReq{ID: id, Policy: pol}, &sb); err != nil {
		return nil, err
	}
	return &sb, nil
}

// CreateSnapshot saves running sandbox rec.Sandbox as snapshot rec.
func (r *RemoteNode) CreateSnapshot(ctx context.Context, rec *store.SandboxSnapshot) (*store.SandboxSnapshot, error) {
	var out store.SandboxSnapshot
	if err := r.call(ctx, mCreateSnapshot, rec, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteSnapshot removes snapshot id.
func (r *RemoteNode) DeleteSnapshot(ctx context.Context, id string) error {
	return r.call(ctx, mDeleteSnapshot, idReq{ID: id}, nil)
}

// StartClones starts recorded sandboxes ids as clones of snapshot snapID.
func (r *RemoteNode) StartClones(ctx context.Context, snapID string, ids []string) ([]*store.Sandbox, error) {
	var out []*store.Sandbox
	err := r.call(ctx, mStartClones, clonesReq{Snapshot: snapID, IDs: ids}, &out)
	return out, err
}

// Stats reads sandbox id's resource use.
func (r *RemoteNode) Stats(ctx context.Context, id string) (driver.Stats, error) {
	var st driver.Stats
	err := r.call(ctx, mStats, idReq{ID: id}, &st)
	return st, err
}

// DialGuest opens a stream to sandbox id's guest agent, through the node.
func (r *RemoteNode) DialGuest(ctx context.Context, id string) (net.Conn, error) {
	s, err := r.session()
	if err != nil {
		return nil, err
	}
	return s.Open(ctx, mGuest, idReq{ID: id})
}
