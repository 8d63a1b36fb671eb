package server

import (
	"math"
	"net/http"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

// Nodes: the hosts that run sandboxes. A den up has one, itself; a
// cluster (den server with Config.Cluster, and den agent) lists the node
// records of its store: every node that joined.

// listNodes answers GET /v1/nodes.
func (s *Server) listNodes(w http.ResponseWriter, _ *http.Request, _ Principal) error {
	if s.cfg.Cluster != nil {
		return s.listClusterNodes(w)
	}
	n, err := s.localNode()
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rest.NodeList{Nodes: []rest.Node{n}})
}

// getNode answers GET /v1/nodes/{id}.
func (s *Server) getNode(w http.ResponseWriter, r *http.Request, _ Principal) error {
	id := r.PathValue("id")
	if s.cfg.Cluster != nil {
		return s.writeClusterNode(w, id)
	}
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

// listClusterNodes writes the store's node records.
func (s *Server) listClusterNodes(w http.ResponseWriter) error {
	snap := s.cfg.Store.Snapshot()
	nodes, err := snap.Nodes()
	if err != nil {
		return err
	}
	out := rest.NodeList{Nodes: []rest.Node{}}
	for _, n := range nodes {
		v, err := clusterNodeView(snap, n)
		if err != nil {
			return err
		}
		out.Nodes = append(out.Nodes, v)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) writeClusterNode(w http.ResponseWriter, id string) error {
	snap := s.cfg.Store.Snapshot()
	n, err := snap.Node(id)
	if err != nil {
		return err
	}
	v, err := clusterNodeView(snap, n)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

// clusterNodeView is the API form of a node record with the count of
// its running sandboxes.
func clusterNodeView(snap *store.Snapshot, n *store.Node) (rest.Node, error) {
	sbs, err := snap.NodeSandboxes(n.ID)
	if err != nil {
		return rest.Node{}, err
	}
	running := 0
	for _, sb := range sbs {
		if sb.State == store.StateRunning {
			running++
		}
	}
	rts := make([]rest.RuntimeInfo, 0, len(n.Runtimes))
	for i, r := range n.Runtimes {
		rts = append(rts, rest.RuntimeInfo{Name: r, Default: i == 0})
	}
	return rest.Node{
		ID: n.ID, State: n.State, Runtimes: rts,
		CPUs: int(math.Floor(n.Capacity.CPUs)), MemoryMB: n.Capacity.MemoryMB,
		Sandboxes: running, Version: n.Version,
		Cluster: &rest.NodeDetail{
			Name: n.Name, Pool: n.Pool, Labels: n.Labels, CPUs: n.Capacity.CPUs, DiskMB: n.Capacity.DiskMB,
			Draining: n.Draining, Server: n.Server, RegisteredAt: n.RegisteredAt, UpdatedAt: n.UpdatedAt,
		},
	}, nil
}

// drainNode answers POST /v1/nodes/{id}/drain: new sandboxes are not
// placed on the node; those it runs stay. Admin keys only.
func (s *Server) drainNode(w http.ResponseWriter, r *http.Request, p Principal) error {
	return s.setDraining(w, r, p, true)
}

// undrainNode answers POST /v1/nodes/{id}/undrain.
func (s *Server) undrainNode(w http.ResponseWriter, r *http.Request, p Principal) error {
	return s.setDraining(w, r, p, false)
}

func (s *Server) setDraining(w http.ResponseWriter, r *http.Request, p Principal, draining bool) error {
	if err := requireAdmin(p, "drain nodes"); err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := s.cfg.Store.SetNodeDraining(r.Context(), id, draining, s.cfg.Now()); err != nil {
		if errdefs.IsNotFound(err) && s.cfg.Cluster == nil {
			verb := "undrain"
			if draining {
				verb = "drain"
			}
			return errdefs.New(errdefs.FailedPrecondition, "%s node %s: draining is for the nodes of a cluster (den server); den up runs only its local node", verb, id)
		}
		return err
	}
	return s.writeClusterNode(w, id)
}
