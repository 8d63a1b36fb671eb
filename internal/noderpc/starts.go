package noderpc

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/store"
)

// Starts is a server's account of the sandboxes it has asked its nodes to
// start new (RemoteNode.StartNew), from the call until its answer. A node
// records such a sandbox itself once it runs (records.create_sandbox), so
// that a start is one store write; it may create no other record, and
// what it sends is untrusted: the record written is the one the server
// asked for, with the node's handle and the server's clock.
type Starts struct {
	mu  sync.Mutex
	m   map[string]*pendingStart
	now func() time.Time
}

// NewStarts is an empty account; now is the server's clock (nil:
// time.Now).
func NewStarts(now func() time.Time) *Starts {
	if now == nil {
		now = time.Now
	}
	return &Starts{m: map[string]*pendingStart{}, now: now}
}

// pendingStart is one start under way. Its mutex orders the node's record
// against the end of the call: a record that comes after the server gave
// up is refused, so a start the server failed is never recorded.
type pendingStart struct {
	node   string
	want   *store.Sandbox
	record func(*store.Sandbox) error

	mu       sync.Mutex
	over     bool
	recorded *store.Sandbox
}

// Serve registers on mux (the server's end of every node link) the call
// by which a node records a start it was asked for.
func (s *Starts) Serve(mux *nodelink.Mux) {
	mux.HandleCall(mRecCreateSandbox, scoped(s.create))
}

func (s *Starts) expect(node string, sb *store.Sandbox, record func(*store.Sandbox) error) (*pendingStart, error) {
	p := &pendingStart{node: node, want: sb.Clone(), record: record}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.m[sb.ID]; dup {
		return nil, errdefs.New(errdefs.AlreadyExists, "sandbox %s is already being started", sb.ID)
	}
	s.m[sb.ID] = p
	return p, nil
}

// settle ends p: a record from its node after this is refused. It returns
// the record written, nil when there is none.
func (s *Starts) settle(p *pendingStart) *store.Sandbox {
	s.mu.Lock()
	if s.m[p.want.ID] == p {
		delete(s.m, p.want.ID)
	}
	s.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.over = true
	return p.recorded
}

// create writes the record of a start node was asked for: the record the
// server asked for, running, with got's handle.
func (s *Starts) create(_ context.Context, node string, got startedReq) (any, error) {
	s.mu.Lock()
	p := s.m[got.ID]
	s.mu.Unlock()
	if p == nil || p.node != node {
		return nil, errdefs.New(errdefs.PermissionDenied, "node %s may record only a sandbox the server asked it to start, and %s is none", node, got.ID)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.over:
		return nil, errdefs.New(errdefs.FailedPrecondition, "the start of sandbox %s is over: the server gave up on it", got.ID)
	case p.recorded != nil:
		return nil, errdefs.New(errdefs.AlreadyExists, "sandbox %s is already recorded", got.ID)
	case len(got.Handle) == 0:
		return nil, errdefs.New(errdefs.InvalidArgument, "the record of sandbox %s carries no handle", got.ID)
	}
	rec := p.want.Clone()
	now := s.now()
	rec.State, rec.Reason, rec.Handle, rec.StartedAt = store.StateRunning, "", got.Handle, now
	if rec.TimeoutSec > 0 {
		rec.ExpiresAt = now.Add(time.Duration(rec.TimeoutSec) * time.Second)
	}
	if err := p.record(rec); err != nil {
		return nil, err
	}
	p.recorded = rec
	return nil, nil // the node needs no copy: the server keeps the record
}

// StartNew starts new sandbox sb, which has no record yet, on the node
// (node.Node.StartNew): the node starts it and then records it, running,
// through starts, which writes the record with record. It returns the
// record written. A start the node recorded counts as done even if its
// answer is lost; one it did not record is failed, and the node destroys
// what it started. It returns nil and no error when the agent does not
// know the call (an older agent): the caller records sb and calls
// StartFrom.
func (r *RemoteNode) StartNew(ctx context.Context, starts *Starts, sb *store.Sandbox, record func(*store.Sandbox) error) (*store.Sandbox, error) {
	p, err := starts.expect(r.id, sb, record)
	if err != nil {
		return nil, err
	}
	// The answer carries nothing: the record is the one written here.
	err = r.call(ctx, mStartNew, recordReq{ID: sb.ID, Record: sb}, nil)
	if rec := starts.settle(p); rec != nil {
		return rec, nil
	}
	switch {
	case err == nil:
		return nil, errdefs.New(errdefs.Internal, "node %s answered the start of sandbox %s without recording it", r.id, sb.ID)
	case unknownCall(err):
		return nil, nil
	}
	return nil, err
}

// unknownCall reports whether err is the other end's answer to a call it
// does not serve.
func unknownCall(err error) bool {
	return errdefs.IsNotFound(err) && strings.Contains(err.Error(), "no call ")
}
