package store

import (
	"net"

	"github.com/hashicorp/raft"
)

// Leader is the raft leader as this server knows it: its ID and cluster
// address, and whether it is this server. ok is false while there is none.
// den up's store always leads.
func (s *Store) Leader() (id, addr string, self, ok bool) {
	a, lid := s.raft.LeaderWithID()
	if lid == "" {
		return "", "", false, false
	}
	return string(lid), string(a), s.raft.State() == raft.Leader, true
}

// ClusterListener is the cluster port's listener of proto, a protocol
// byte of the caller's (not clustermux.ProtoRaft or ProtoRPC): other
// server-to-server traffic over the same mutual TLS. Nil for den up.
func (s *Store) ClusterListener(proto byte) net.Listener {
	if s.cluster == nil {
		return nil
	}
	return s.cluster.mux.Listener(proto)
}
