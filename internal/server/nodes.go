package server

import (
	"net/http"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

// Nodes: the hosts that run sandboxes. A den up has one, itself; the
// cluster (den server and den agent) will list every node that joined.

// listNodes answers GET /v1/nodes.
func (s *Server) listNodes(w http.ResponseWriter, _ *http.Request, _ Principal) error {
	n, err := s.localNode()
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rest.NodeList{Nodes: []rest.Node{n}})
}

// getNode answers GET /v1/nodes/{id}.
func (s *Server) getNode(w http.ResponseWriter, r *http.Request, _ Principal) error {
	id := r.PathValue("id")
	if id != s.cfg.Node.ID() {
		return errdefs.New(errdefs.NotFound, "node %s not found", id)
	}
	n, err := s.localNode()
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, n)
}

// localNode describes the node this server drives.
func (s *Server) localNode() (rest.Node, error) {
	id := s.cfg.Node.ID()
	running, _, err := s.cfg.Store.Snapshot().Sandboxes(store.SandboxFilter{States: []string{store.StateRunning}})
	if err != nil {
		return rest.Node{}, err
	}
	count := 0
	for _, sb := range running {
		if sb.Node == id || sb.Node == "" {
			count++
		}
	}
	res := s.cfg.Node.Resources()
	return rest.Node{
		ID: id, State: rest.NodeReady, Runtimes: runtimeDetails(s.cfg.Node.Runtimes()),
		CPUs: res.CPUs, MemoryMB: res.MemoryMB, MemoryAvailableMB: res.MemoryAvailableMB,
		Sandboxes: count, Version: s.cfg.Version,
	}, nil
}
