package noderpc

import (
	"context"
	"encoding/json"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/store"
)

// ServeRecords registers on mux (the server's end of every node link) the
// calls an agent's node makes to read and settle its records in st. Each
// call is scoped to the node named by the link (nodelink.Peer): another
// node's sandbox or snapshot is NotFound, exactly like one that does not
// exist, and an update may not change a sandbox's ID, tenant, node or
// access token.
func ServeRecords(mux *nodelink.Mux, st *store.Store) {
	r := &recordsServer{st: st}
	mux.HandleCall(mRecSandbox, scoped(r.sandbox))
	mux.HandleCall(mRecSandboxes, scoped(r.sandboxes))
	mux.HandleCall(mRecUpdateSandbox, scoped(r.updateSandbox))
	mux.HandleCall(mRecDeleteSandbox, scoped(r.deleteSandbox))
	mux.HandleCall(mRecSnapshot, scoped(r.snapshot))
	mux.HandleCall(mRecSnapshotByName, scoped(r.snapshotByName))
	mux.HandleCall(mRecSnapshots, scoped(r.snapshots))
	mux.HandleCall(mRecCreateSnapshot, scoped(r.createSnapshot))
	mux.HandleCall(mRecDeleteSnapshot, scoped(r.deleteSnapshot))
	mux.HandleCall(mRecPools, scoped(r.pools))
}

type recordsServer struct{ st *store.Store }

// scoped decodes a call's request and runs fn with the calling node's ID;
// a link without one serves nothing.
func scoped[T any](fn func(ctx context.Context, node string, req T) (any, error)) nodelink.CallFunc {
	return func(ctx context.Context, raw json.RawMessage) (any, error) {
		node := nodelink.Peer(ctx)
		if node == "" {
			return nil, errdefs.New(errdefs.Unauthenticated, "the node link names no node")
		}
		var req T
		if err := decode(raw, &req); err != nil {
			return nil, err
		}
		return fn(ctx, node, req)
	}
}

func decode(raw json.RawMessage, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "decode the request")
	}
	return nil
}

// ownSandbox reads sandbox id if it is placed on node.
func (r *recordsServer) ownSandbox(node, id string) (*store.Sandbox, error) {
	sb, err := r.st.Snapshot().Sandbox(id)
	if err == nil && sb.Node != node {
		return nil, errdefs.New(errdefs.NotFound, "sandbox %s not found on node %s", id, node)
	}
	return sb, err
}

func (r *recordsServer) sandbox(_ context.Context, node string, req idReq) (any, error) {
	return r.ownSandbox(node, req.ID)
}

func (r *recordsServer) sandboxes(_ context.Context, node string, f store.SandboxFilter) (any, error) {
	f.Node = node
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 1000 // bounded answers; the caller pages
	}
	sbs, next, err := r.st.Snapshot().Sandboxes(f)
	if err != nil {
		return nil, err
	}
	return sandboxesResp{Sandboxes: sbs, Next: next}, nil
}

func (r *recordsServer) updateSandbox(ctx context.Context, node string, sb store.Sandbox) (any, error) {
	cur, err := r.ownSandbox(node, sb.ID)
	if err != nil {
		return nil, err
	}
	switch {
	case sb.Node != node:
		return nil, errdefs.New(errdefs.PermissionDenied, "node %s may not move sandbox %s to node %q", node, sb.ID, sb.Node)
	case sb.Tenant != cur.Tenant || sb.AccessToken != cur.AccessToken:
		return nil, errdefs.New(errdefs.PermissionDenied, "node %s may not change the tenant or access token of sandbox %s", node, sb.ID)
	}
	if err := r.st.UpdateSandbox(ctx, &sb); err != nil {
		return nil, err
	}
	return &sb, nil
}

func (r *recordsServer) deleteSandbox(ctx context.Context, node string, req idReq) (any, error) {
	if _, err := r.ownSandbox(node, req.ID); err != nil {
		return nil, err
	}
	return nil, r.st.DeleteSandbox(ctx, req.ID)
}

func ownSnapshot(node string, rec *store.SandboxSnapshot, err error) (*store.SandboxSnapshot, error) {
	if err == nil && rec.Node != node {
		return nil, errdefs.New(errdefs.NotFound, "snapshot %s not found on node %s", rec.ID, node)
	}
	return rec, err
}

func (r *recordsServer) snapshot(_ context.Context, node string, req idReq) (any, error) {
	rec, err := r.st.Snapshot().SandboxSnapshot(req.ID)
	return ownSnapshot(node, rec, err)
}

func (r *recordsServer) snapshotByName(_ context.Context, node string, req nameReq) (any, error) {
	rec, err := r.st.Snapshot().SandboxSnapshotByName(req.Tenant, req.Name)
	return ownSnapshot(node, rec, err)
}

func (r *recordsServer) snapshots(_ context.Context, node string, req nameReq) (any, error) {
	recs, err := r.st.Snapshot().SandboxSnapshots(req.Tenant)
	if err != nil {
		return nil, err
	}
	own := []*store.SandboxSnapshot{}
	for _, rec := range recs {
		if rec.Node == node {
			own = append(own, rec)
		}
	}
	return own, nil
}

func (r *recordsServer) createSnapshot(ctx context.Context, node string, rec store.SandboxSnapshot) (any, error) {
	if rec.Node != node {
		return nil, errdefs.New(errdefs.PermissionDenied, "node %s may not record a snapshot of node %q", node, rec.Node)
	}
	if err := r.st.CreateSandboxSnapshot(ctx, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

func (r *recordsServer) deleteSnapshot(ctx context.Context, node string, req idReq) (any, error) {
	rec, err := r.st.Snapshot().SandboxSnapshot(req.ID)
	if _, err := ownSnapshot(node, rec, err); err != nil {
		return nil, err
	}
	return nil, r.st.DeleteSandboxSnapshot(ctx, req.ID)
}

func (r *recordsServer) pools(_ context.Context, _ string, req nameReq) (any, error) {
	return r.st.Snapshot().Pools(req.Tenant)
}
