package noderpc

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"sync"

	"github.com/denhq/den/internal/errdefs"
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
	mux.HandleCall(mStartNew, func(ctx context.Context, raw json.RawMessage) (any, error) {
		var req recordReq
		if err := decode(raw, &req); err != nil {
			return nil, err
		}
		if req.Record == nil || req.Record.ID != req.ID {
			return nil, errdefs.New(errdefs.InvalidArgument, "%s: the request carries no record of sandbox %s", mStartNew, req.ID)
		}
		_, err := n.StartNew(ctx, req.Record)
		return nil, err // the server holds the record it wrote
	})
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
		if handled, err := n.HandOffGuest(ctx, req.ID, st.Accept); handled {
			if err != nil {
				st.Refuse(err)
			}
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
	go func() { copyAdaptive(a, b); once.Do(closeBoth); done <- struct{}{} }()
	go func() { copyAdaptive(b, a); once.Do(closeBoth); done <- struct{}{} }()
	<-done
	<-done
}

// Buffers of copyAdaptive. A node holds two copies per open guest stream,
// and the servers keep idle guest connections open for a while: with
// io.Copy's 32 KiB each, 9,000 quiet streams held 580 MB of a simulated
// node's heap. A quiet copy holds only smallCopyBuf.
const (
	smallCopyBuf = 2 << 10
	largeCopyBuf = 32 << 10
)

var largeBufs = sync.Pool{New: func() any { b := make([]byte, largeCopyBuf); return &b }}

// copyAdaptive copies src to dst until EOF or an error, like io.Copy. It
// reads into a small buffer while src is quiet and into a pooled large
// one while reads fill the buffer (a bulk transfer), giving the large one
// back after the first short read.
func copyAdaptive(dst io.Writer, src io.Reader) error {
	small := make([]byte, smallCopyBuf)
	buf := small
	var large *[]byte
	defer func() {
		if large != nil {
			largeBufs.Put(large)
		}
	}()
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case large == nil && n == len(buf):
			large = largeBufs.Get().(*[]byte)
			buf = *large
		case large != nil && n < smallCopyBuf:
			largeBufs.Put(large)
			large, buf = nil, small
		}
	}
}
