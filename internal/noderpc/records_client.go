package noderpc

import (
	"context"
	"sync"
	"time"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/node"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/store"
)

// readTimeout bounds a read, whose interface takes no context.
const readTimeout = 30 * time.Second

// poolResync is how often an agent's node re-reads the pools: it sees
// no change events over the link, so its PoolsChanged fires on a timer.
const poolResync = 10 * time.Second

// Link holds an agent's current session to the servers; the agent sets it
// on every (re)connect. Calls while it is down fail Unavailable.
type Link struct {
	mu sync.Mutex
	s  *nodelink.Session
}

// Set makes s the current session.
func (l *Link) Set(s *nodelink.Session) {
	l.mu.Lock()
	l.s = s
	l.mu.Unlock()
}

// Session is the current session.
func (l *Link) Session() (*nodelink.Session, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.s == nil {
		return nil, errdefs.New(errdefs.Unavailable, "not connected to a den server")
	}
	select {
	case <-l.s.Done():
		return nil, errdefs.New(errdefs.Unavailable, "the connection to the den server is down (reconnecting)")
	default:
	}
	return l.s, nil
}

func (l *Link) call(ctx context.Context, method string, req, resp any) error {
	s, err := l.Session()
	if err != nil {
		return err
	}
	return s.Call(ctx, method, req, resp)
}

// RemoteRecords is node.Records over the link: an agent's node reads and
// settles its records on the servers.
func RemoteRecords(l *Link) node.Records { return remoteRecords{l} }

type remoteRecords struct{ l *Link }

func (r remoteRecords) Snapshot() node.RecordReader { return remoteReader(r) }

// CreateSandbox asks the server to record a sandbox it asked this node to
// start (Starts): the server writes the record it asked for with sb's
// handle, so only the ID and the handle are sent, and it answers nothing;
// sb is left as it was.
func (r remoteRecords) CreateSandbox(ctx context.Context, sb *store.Sandbox) error {
	return r.l.call(ctx, mRecCreateSandbox, startedReq{ID: sb.ID, Handle: sb.Handle}, nil)
}

func (r remoteRecords) UpdateSandbox(ctx context.Context, sb *store.Sandbox) error {
	var out store.Sandbox
	if err := r.l.call(ctx, mRecUpdateSandbox, sb, &out); err != nil {
		return err
	}
	*sb = out
	return nil
}

func (r remoteRecords) DeleteSandbox(ctx context.Context, id string) error {
	return r.l.call(ctx, mRecDeleteSandbox, idReq{ID: id}, nil)
}

func (r remoteRecords) CreateSandboxSnapshot(ctx context.Context, snap *store.SandboxSnapshot) error {
	var out store.SandboxSnapshot
	if err := r.l.call(ctx, mRecCreateSnapshot, snap, &out); err != nil {
		return err
	}
	*snap = out
	return nil
}

func (r remoteRecords) DeleteSandboxSnapshot(ctx context.Context, id string) error {
	return r.l.call(ctx, mRecDeleteSnapshot, idReq{ID: id}, nil)
}

// remoteReader reads each record when asked.
type remoteReader struct{ l *Link }

func (r remoteReader) read(method string, req, resp any) error {
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	return r.l.call(ctx, method, req, resp)
}

func (r remoteReader) Sandbox(id string) (*store.Sandbox, error) {
	var sb store.Sandbox
	if err := r.read(mRecSandbox, idReq{ID: id}, &sb); err != nil {
		return nil, err
	}
	return &sb, nil
}

func (r remoteReader) Sandboxes(f store.SandboxFilter) ([]*store.Sandbox, string, error) {
	var resp sandboxesResp
	if err := r.read(mRecSandboxes, f, &resp); err != nil {
		return nil, "", err
	}
	return resp.Sandboxes, resp.Next, nil
}

func (r remoteReader) SandboxSnapshot(id string) (*store.SandboxSnapshot, error) {
	var rec store.SandboxSnapshot
	if err := r.read(mRecSnapshot, idReq{ID: id}, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

func (r remoteReader) SandboxSnapshotByName(tenant, name string) (*store.SandboxSnapshot, error) {
	var rec store.SandboxSnapshot
	if err := r.read(mRecSnapshotByName, nameReq{Tenant: tenant, Name: name}, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

func (r remoteReader) SandboxSnapshots(tenant string) ([]*store.SandboxSnapshot, error) {
	var recs []*store.SandboxSnapshot
	err := r.read(mRecSnapshots, nameReq{Tenant: tenant}, &recs)
	return recs, err
}

func (r remoteReader) Pools(tenant string) ([]*store.Pool, error) {
	var recs []*store.Pool
	err := r.read(mRecPools, nameReq{Tenant: tenant}, &recs)
	return recs, err
}

func (r remoteReader) PoolsChanged() <-chan struct{} {
	ch := make(chan struct{})
	time.AfterFunc(poolResync, func() { close(ch) })
	return ch
}
