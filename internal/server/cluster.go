package server

import (
	"net/http"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/carotate"
	"github.com/denhq/den/internal/errdefs"
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

// getClusterCA answers GET /v1/cluster/ca: the cluster CA and where a
// rotation of it stands; admin keys only, den server only.
func (s *Server) getClusterCA(w http.ResponseWriter, _ *http.Request, p Principal) error {
	st, err := s.clusterCA(p, "read the cluster CA")
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

// rotateClusterCA answers POST /v1/cluster/ca/rotate: it begins or aborts
// a rotation (internal/carotate); the leader takes the later steps.
func (s *Server) rotateClusterCA(w http.ResponseWriter, r *http.Request, p Principal) error {
	if _, err := s.clusterCA(p, "rotate the cluster CA"); err != nil {
		return err
	}
	var req rest.RotateClusterCARequest
	if r.ContentLength != 0 {
		if err := decodeJSON(r, &req); err != nil {
			return err
		}
	}
	var err error
	switch req.Action {
	case "", rest.CARotateBegin:
		err = carotate.Begin(r.Context(), s.cfg.Store)
	case rest.CARotateAbort:
		err = carotate.Abort(r.Context(), s.cfg.Store)
	default:
		return errdefs.New(errdefs.InvalidArgument, "action %q: want %q or %q", req.Action, rest.CARotateBegin, rest.CARotateAbort)
	}
	if err != nil {
		return err
	}
	st, err := s.clusterCA(p, "read the cluster CA")
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, st)
}

func (s *Server) clusterCA(p Principal, what string) (rest.ClusterCA, error) {
	if err := requireAdmin(p, what); err != nil {
		return rest.ClusterCA{}, err
	}
	if err := s.requireCluster(what); err != nil {
		return rest.ClusterCA{}, err
	}
	ms, err := s.cfg.Store.Members()
	if err != nil {
		return rest.ClusterCA{}, err
	}
	st, err := carotate.StatusOf(s.cfg.Store.Snapshot(), ms, s.cfg.Cluster.CAs)
	if err != nil {
		return rest.ClusterCA{}, err
	}
	out := rest.ClusterCA{Phase: st.Phase, Generation: st.Generation, Signer: caCert(st.Signer),
		RotationStartedAt: restTime(st.RotationStarted), RotatedAt: restTime(st.RotatedAt),
		WaitingServers: append([]string{}, st.WaitingServers...), WaitingNodes: append([]string{}, st.WaitingNodes...)}
	if st.Next != nil {
		c := caCert(*st.Next)
		out.Next = &c
	}
	if st.Previous != nil {
		c := caCert(*st.Previous)
		out.Previous = &c
	}
	return out, nil
}

func caCert(c carotate.CAInfo) rest.CACert {
	return rest.CACert{Hash: c.Hash, ExpiresAt: c.NotAfter.Format(time.RFC3339)}
}

func restTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
