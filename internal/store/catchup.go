package store

import (
	"context"
	"fmt"

	"github.com/hashicorp/raft"

	"github.com/denhq/den/internal/errdefs"
)

// CatchUp waits until this server has applied every write acknowledged by
// any server before the call. It reports true when this server is a
// follower that did so (a read that missed before may find more now), and
// false at once when it cannot be behind: den up's single voter and a
// cluster's leader apply every write before acknowledging it.
//
// A follower's reads are otherwise only eventually consistent with writes
// taken by other servers; callers use CatchUp after a miss (an unknown API
// key, a NotFound) rather than before every read. It costs a round trip to
// the leader and a raft barrier there. While no leader is known it waits
// like a write (ClusterConfig.LeaderWait), then fails Unavailable.
func (s *Store) CatchUp(ctx context.Context) (bool, error) {
	if s.cluster == nil || s.raft.State() == raft.Leader {
		return false, nil
	}
	if s.closed.Load() {
		return false, errdefs.New(errdefs.Unavailable, "catch up: store is closed")
	}
	if err := s.cluster.catchUp(ctx); err != nil {
		return false, fmt.Errorf("catch up with the leader: %w", err)
	}
	return true, nil
}
