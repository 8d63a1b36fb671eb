package cluster

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/store"
)

// Registry is the set of nodes connected to one server, with their
// sessions and the time of their last heartbeat. Heartbeats live only
// here; the store hears of a node's transitions. Safe for concurrent use.
type Registry struct {
	s *Server

	mu    sync.Mutex
	nodes map[string]*entry
	// announced holds the connections whose OnConnect ran, so that each
	// gets exactly one OnDisconnect.
	announced map[*nodeConn]bool
}

// entry is a node that said hello here and is not yet marked down. conn
// is nil for a node adopted from the store at start (see adopt): it has
// the TTL to come back.
type entry struct {
	id       string
	conn     *nodeConn
	epoch    uint64
	lastSeen time.Time
	// trust and issuer are what the node's last heartbeat said of its
	// CAs (nodeproto.Heartbeat).
	trust, issuer string
}

func newRegistry(s *Server) *Registry {
	return &Registry{s: s, nodes: map[string]*entry{}, announced: map[*nodeConn]bool{}}
}

// Session is the live session of node id on this server.
func (r *Registry) Session(id string) (*nodelink.Session, bool) {
	r.mu.Lock()
	e := r.nodes[id]
	r.mu.Unlock()
	if e == nil || e.conn == nil {
		return nil, false
	}
	select {
	case <-e.conn.sess.Done():
		return nil, false
	default:
		return e.conn.sess, true
	}
}

// Nodes lists, sorted, the IDs of the nodes with a live session here.
func (r *Registry) Nodes() []string {
	r.mu.Lock()
	ids := make([]string, 0, len(r.nodes))
	for id := range r.nodes {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	live := ids[:0]
	for _, id := range ids {
		if _, ok := r.Session(id); ok {
			live = append(live, id)
		}
	}
	slices.Sort(live)
	return live
}

// connected makes nc node's current connection after its hello; an
// older connection of the node here is closed.
func (r *Registry) connected(nc *nodeConn, epoch uint64) {
	r.mu.Lock()
	old := r.nodes[nc.id]
	r.nodes[nc.id] = &entry{id: nc.id, conn: nc, epoch: epoch, lastSeen: r.s.cfg.Now()}
	first := !r.announced[nc]
	r.announced[nc] = true
	if first {
		close(nc.helloed)
	}
	r.mu.Unlock()
	if old != nil && old.conn != nil && old.conn != nc {
		old.conn.sess.Close()
	}
	if first && r.s.cfg.OnConnect != nil {
		r.s.cfg.OnConnect(nc.id, nc.sess)
	}
}

// closed is called when nc's session ended. The node's entry stays: it
// is marked down when its heartbeats have been missing for the TTL,
// unless it reconnects first.
func (r *Registry) closed(nc *nodeConn) {
	r.mu.Lock()
	announced := r.announced[nc]
	delete(r.announced, nc)
	r.mu.Unlock()
	if announced && r.s.cfg.OnDisconnect != nil {
		r.s.cfg.OnDisconnect(nc.id, nc.sess)
	}
}

// beat notes a heartbeat on nc; FailedPrecondition when nc is not the
// node's current connection (no hello yet, or it was marked down).
func (r *Registry) beat(nc *nodeConn, trust, issuer string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.nodes[nc.id]
	if e == nil || e.conn != nc {
		return errdefs.New(errdefs.FailedPrecondition, "node %s: this session is not the node's current one: say hello first, or reconnect", nc.id)
	}
	e.lastSeen = r.s.cfg.Now()
	e.trust, e.issuer = trust, issuer
	return nil
}

// CAs is what node id's last heartbeat on a live session here said of its
// CAs: the hash of the set it trusts and of its certificate's CA. ok is
// false for a node with no live session here.
func (r *Registry) CAs(id string) (trust, issuer string, ok bool) {
	if _, live := r.Session(id); !live {
		return "", "", false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.nodes[id]
	if e == nil {
		return "", "", false
	}
	return e.trust, e.issuer, true
}

// current reports whether nc is its node's current connection here.
func (r *Registry) current(nc *nodeConn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.nodes[nc.id]
	return e != nil && e.conn == nc
}

// expired takes out of the registry the nodes whose heartbeats stopped
// for the TTL.
func (r *Registry) expired(now time.Time) []*entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*entry
	for id, e := range r.nodes {
		if now.Sub(e.lastSeen) >= r.s.cfg.HeartbeatTTL {
			out = append(out, e)
			delete(r.nodes, id)
		}
	}
	return out
}

// retry puts back an entry whose down could not be written.
func (r *Registry) retry(e *entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nodes[e.id] == nil {
		r.nodes[e.id] = e
	}
}

// adopt takes over the nodes that the store says are connected to this
// server (it restarted): each gets the TTL from now to reconnect, here or
// anywhere, before it is marked down with the epoch the store holds.
// Without this, a node that died while its server was down would stay
// ready forever.
func (r *Registry) adopt(snap *store.Snapshot) error { return r.adoptFrom(snap, false) }

// adoptFrom is adopt of the nodes of this server, or with all of every
// server's.
func (r *Registry) adoptFrom(snap *store.Snapshot, all bool) error {
	nodes, err := snap.Nodes()
	if err != nil {
		return err
	}
	now := r.s.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range nodes {
		if (all || n.Server == r.s.cfg.ServerID) && n.State != store.NodeDown && r.nodes[n.ID] == nil {
			r.nodes[n.ID] = &entry{id: n.ID, epoch: n.Epoch, lastSeen: now}
		}
	}
	return nil
}

// monitor marks down the nodes whose heartbeats stopped.
func (s *Server) monitor() {
	defer s.wg.Done()
	every := max(s.cfg.HeartbeatTTL/4, 5*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		for _, e := range s.Registry.expired(s.cfg.Now()) {
			s.markDown(e)
		}
	}
}

// markDown records a silent node down, unless it has reconnected since
// (to any server: the epoch tells), then ends its session here: a node
// that was only slow reconnects and says hello again. The record is
// written before the session closes, so whoever sees the session end
// sees the outcome.
func (s *Server) markDown(e *entry) {
	if e.conn != nil {
		defer e.conn.sess.Close()
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	err := s.cfg.Store.NodeDown(ctx, e.id, e.epoch, s.cfg.Now())
	switch {
	case err == nil:
		s.log.Warn("node down: heartbeats stopped", "node", e.id, "epoch", e.epoch, "ttl", s.cfg.HeartbeatTTL)
	case errdefs.Is(err, errdefs.Conflict), errdefs.IsNotFound(err):
		s.log.Debug("node not marked down", "node", e.id, "reason", err)
	case s.ctx.Err() != nil:
	default:
		s.log.Warn("node down not recorded; will retry", "node", e.id, "error", err)
		s.Registry.retry(e)
	}
}
