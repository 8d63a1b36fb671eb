package noderpc

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"sync"

	"github.com/denhq/den/internal/node"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/store"
)

// ServeNode registers on mux (the agent's end of its node link) the calls
// a server makes to drive n.
func ServeNode(mux *nodelink.Mux, n *node.Node) {
	mux.HandleCall(mInfo, func(context.Context, json.RawMessage) (any, error) {
		info := Info{ID: n.ID(), Runtimes: n.Runtimes(), Resources: n.Resources(), Pools: n.PoolStatus()}
		var err error
		if info.PoolBudgetMB, err = n.PoolMemoryBudgetMB(); err != nil {
			info.PoolBudgetErr = err.Error()
		}
		return info, nil
	})
	byID := func(fn func(context.Context, string) (any, error)) nodelink.CallFunc {
		return func(ctx context.Context, raw json.RawMessage) (any, error) {
			var req idReq
			if err := decode(raw, &req); err != nil {
				return nil, err
			}
			return fn(ctx, req.ID)
		}
	}
	byRecord := func(fn func(context.Context, *store.Sandbox) (any, error)) nodelink.CallFunc {
		return func(ctx context.Context, raw json.RawMessage) (any, error) {
			var req recordReq
			if err := decode(raw, &req); err != nil {
				return nil, err
			}
			return fn(ctx, req.record())
		}
	}
	mux.HandleCall(mStart, byRecord(func(ctx context.Context, sb *store.Sandbox) (any, error) { return n.StartFrom(ctx, sb) }))
	mux.HandleCall(mDestroy, byRecord(func(ctx context.Context, sb *store.Sandbox) (any, error) { return nil, n.DestroyFrom(ctx, sb) }))
	mux.HandleCall(mSuspend, byID(func(ctx context.Context, id string) (any, error) { return n.Suspend(ctx, id) }))
	mux.HandleCall(mResume, byID(func(ctx context.Context, id string) (any, error) { return n.Resume(ctx, id) }))
	mux.HandleCall(mStats, byID(func(ctx context.Context, id string) (any, error) { return n.Stats(ctx, id) }))
	mux.HandleCall(mDeleteSnapshot, byID(func(ctx context.Context, id string) (any, error) { return nil, n.DeleteSnapshot(ctx, id) }))
	mux.HandleCall(mSetNetwork, func(ctx context.Context, raw json.RawMessage) (any, error) {
		var req networkReq
		if err := decode(raw, &req); err != nil {
			return nil, err
		}
		return n.SetNetwork(ctx, req.ID, req.Policy)
	})
	mux.HandleCall(mCreateSnapshot, func(ctx context.Context, raw json.RawMessage) (any, error) {
		var rec store.SandboxSnapshot
		if err := decode(raw, &rec); err != nil {
			return nil, err
		}
		return n.CreateSnapshot(ctx, &rec)
	})
	mux.HandleCall(mStartClones, func(ctx context.Context, raw json.RawMessage) (any, error) {
		var req clonesReq
		if err := decode(raw, &req); err != nil {
			return nil, err
		}
		return n.StartClones(ctx, req.Snapshot, req.IDs)
	})
	mux.HandleStream(mGuest, func(ctx context.Context, raw json.RawMessage, st *nodelink.Stream) {
		var req idReq
		if err := decode(raw, &req); err != nil {
			st.Refuse(err)
			return
		}
		guest, err := n.DialGuest(ctx, req.ID)
		if err != nil {
			st.Refuse(err)
			return
		}
		conn, err := st.Accept()
		if err != nil {
			guest.Close()
			return
		}
		splice(conn, guest)
	})
}

// splice copies a and b into each other until either side ends, then
// closes both.
func splice(a, b net.Conn) {
	var once sync.Once
	closeBoth := func() { a.Close(); b.Close() }
	done := make(chan struct{}, 2)
	go func() { io.Copy(a, b); once.Do(closeBoth); done <- struct{}{} }()
	go func() { io.Copy(b, a); once.Do(closeBoth); done <- struct{}{} }()
	<-done
	<-done
}
