package server

import (
	"net/http"
	"time"

	"github.com/denhq/den/api/rest"
)

// listClusterMembers answers GET /v1/cluster/members: the servers of the
// raft cluster as this server sees them; admin keys only.
func (s *Server) listClusterMembers(w http.ResponseWriter, _ *http.Request, p Principal) error {
	if err := requireAdmin(p, "list cluster members"); err != nil {
		return err
	}
	ms, err := s.cfg.Store.Members()
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	out := rest.ClusterMemberList{Server: s.cfg.Store.ID(), Members: make([]rest.ClusterMember, 0, len(ms))}
	for _, m := range ms {
		cm := rest.ClusterMember{ID: m.ID, Address: m.Address, Role: rest.MemberFollower, Voter: m.Voter}
		if m.Leader {
			cm.Role = rest.MemberLeader
		}
		if !m.LastContact.IsZero() {
			ago := max(now.Sub(m.LastContact), 0) / time.Millisecond
			if m.ID == out.Server {
				ago = 0
			}
			ms := int64(ago)
			cm.LastContactMs = &ms
		}
		out.Members = append(out.Members, cm)
	}
	return writeJSON(w, http.StatusOK, out)
}
