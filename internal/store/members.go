package store

import (
	"time"

	"github.com/hashicorp/raft"

	"github.com/denhq/den/internal/errdefs"
)

// Member is one server of the raft configuration, as this server sees it.
type Member struct {
	// ID is the server's raft ID; Address its cluster address (the
	// node ID itself for den up's in-memory transport).
	ID, Address string
	// Leader: this member leads, as far as this server knows.
	Leader bool
	// Voter: the member votes and counts for the quorum.
	Voter bool
	// LastContact is when this server last heard from the member over
	// raft: zero when never (or not since this server started). The
	// answering server's own entry says the time of the call.
	LastContact time.Time
}

// ID is this server's raft ID (Config.NodeID).
func (s *Store) ID() string { return s.id }

// Members lists the servers of the current raft configuration, sorted as
// raft keeps them. It reads local state only: a follower cut off from the
// leader still answers, with old contact times.
func (s *Store) Members() ([]Member, error) {
	if s.closed.Load() {
		return nil, errdefs.New(errdefs.Unavailable, "list members: store is closed")
	}
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, mapRaftErr(err)
	}
	_, leaderID := s.raft.LeaderWithID()
	now := time.Now()
	var out []Member
	for _, srv := range f.Configuration().Servers {
		m := Member{
			ID: string(srv.ID), Address: string(srv.Address),
			Leader: srv.ID == leaderID && leaderID != "",
			Voter:  srv.Suffrage == raft.Voter,
		}
		switch {
		case string(srv.ID) == s.id:
			m.LastContact = now
		case s.cluster != nil:
			m.LastContact = s.cluster.contacts.lastContact(m.ID)
		}
		out = append(out, m)
	}
	return out, nil
}
