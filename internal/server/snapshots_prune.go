package server

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/node"
	"github.com/denhq/den/internal/snapshot"
	"github.com/denhq/den/internal/store"
)

// Snapshot storage: GET /v1/snapshots/usage and POST /v1/snapshots/prune.
// The node measures and removes files; the server scopes them to the
// caller's tenant by the records.

// snapshotStorage is what the usage and prune routes need of the node,
// beyond Node; a node without it answers them Unsupported.
type snapshotStorage interface {
	SnapshotUsage(ctx context.Context) (snapshot.Usage, error)
	PruneSnapshots(ctx context.Context, opts node.PruneOptions) (node.PruneReport, error)
}

func (s *Server) snapshotStorage() (snapshotStorage, error) {
	st, ok := s.cfg.Node.(snapshotStorage)
	if !ok || !slices.ContainsFunc(s.cfg.Node.Runtimes(), func(r node.RuntimeInfo) bool { return r.Suspend }) {
		return nil, errdefs.New(errdefs.Unsupported, "node %s keeps no snapshots: none of its runtimes (%s) can", s.cfg.Node.ID(), strings.Join(runtimeNames(s.cfg.Node.Runtimes()), ", "))
	}
	return st, nil
}

// SnapshotUsage is the disk p's snapshots take on the node, with the
// node's totals (every tenant's, and what no record names).
func (s *Server) SnapshotUsage(ctx context.Context, p Principal) (*rest.SnapshotUsage, error) {
	st, err := s.snapshotStorage()
	if err != nil {
		return nil, err
	}
	u, err := st.SnapshotUsage(ctx)
	if err != nil {
		return nil, err
	}
	out := &rest.SnapshotUsage{Node: s.cfg.Node.ID(), Sandboxes: []rest.SandboxSnapshotUsage{}, Objects: []rest.SnapshotObjectUsage{},
		NodeBytes: u.Bytes, NodeFiles: u.Files, ByKind: map[string]rest.SnapshotUsageTotal{}}
	for k, t := range u.ByKind {
		out.ByKind[k] = rest.SnapshotUsageTotal{Dirs: t.Entries, Bytes: t.Bytes, Files: t.Files}
	}
	snap := s.cfg.Store.Snapshot()
	sandboxes := map[string]*rest.SandboxSnapshotUsage{}
	objects := map[string]*rest.SnapshotObjectUsage{}
	for _, e := range u.Entries {
		switch e.Kind {
		case snapshot.KindGeneration, snapshot.KindPending:
			sb, err := snap.Sandbox(e.Owner)
			if err != nil {
				out.OrphanBytes += e.Bytes
				continue
			}
			if sb.Tenant == p.Tenant {
				addSandboxUsage(sandboxes, sb, e)
			}
		case snapshot.KindObject, snapshot.KindObjectPending:
			rec, err := snap.SandboxSnapshot(e.Owner)
			if err != nil {
				out.OrphanBytes += e.Bytes
				continue
			}
			if rec.Tenant == p.Tenant {
				addObjectUsage(objects, rec, e)
			}
		default:
			if e.Owner == "" || !ownerRecorded(snap, e.Owner) {
				out.OrphanBytes += e.Bytes
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(sandboxes)) {
		out.Sandboxes = append(out.Sandboxes, *sandboxes[id])
		out.TenantBytes += sandboxes[id].Bytes
	}
	for _, id := range slices.Sorted(maps.Keys(objects)) {
		out.Objects = append(out.Objects, *objects[id])
		out.TenantBytes += objects[id].Bytes
	}
	return out, nil
}

// ownerRecorded reports whether a sandbox or a snapshot record has id.
func ownerRecorded(snap *store.Snapshot, id string) bool {
	if _, err := snap.Sandbox(id); err == nil {
		return true
	}
	_, err := snap.SandboxSnapshot(id)
	return err == nil
}

func addSandboxUsage(m map[string]*rest.SandboxSnapshotUsage, sb *store.Sandbox, e snapshot.Entry) {
	su := m[sb.ID]
	if su == nil {
		su = &rest.SandboxSnapshotUsage{ID: sb.ID, Name: sb.Name, State: sb.State}
		if sb.Snapshot != nil {
			su.PinnedGeneration = sb.Snapshot.Generation
		}
		m[sb.ID] = su
	}
	if e.Kind == snapshot.KindPending {
		su.Pending++
	} else {
		su.Generations++
	}
	su.Bytes += e.Bytes
	su.Files += e.Files
}

func addObjectUsage(m map[string]*rest.SnapshotObjectUsage, rec *store.SandboxSnapshot, e snapshot.Entry) {
	ou := m[rec.ID]
	if ou == nil {
		ou = &rest.SnapshotObjectUsage{ID: rec.ID, Name: rec.Name, CreatedAt: rec.CreatedAt}
		m[rec.ID] = ou
	}
	ou.Bytes += e.Bytes
	ou.Files += e.Files
}

// reasonObjectAge is the reason of a snapshot object pruned by age.
const reasonObjectAge = "snapshot object older than %s, asked for"

// PruneSnapshots removes the snapshot files nothing references (see
// node.Node.PruneSnapshots): of p's sandboxes, and for an admin the
// directories no record names. With req.Objects it also deletes p's
// snapshot objects older than req.OlderThanSec (records and files), named
// ones only with req.IncludeNamed: objects are user data and never go
// unless asked for. InvalidArgument when Objects lacks OlderThanSec.
func (s *Server) PruneSnapshots(ctx context.Context, p Principal, req rest.PruneSnapshotsRequest) (*rest.PruneSnapshotsResult, error) {
	objects, err := s.objectsToPrune(p, req)
	if err != nil {
		return nil, err
	}
	st, err := s.snapshotStorage()
	if err != nil {
		return nil, err
	}
	opts := node.PruneOptions{DryRun: req.DryRun, Tenant: p.Tenant, Orphans: p.Admin}
	if p.Admin {
		opts.Tenant = "" // an admin key cleans up the whole node
	}
	out := &rest.PruneSnapshotsResult{DryRun: req.DryRun, Removed: []rest.PrunedSnapshot{}}
	rep, err := st.PruneSnapshots(ctx, opts)
	for _, it := range rep.Items {
		addPruned(out, prunedREST(it))
	}
	if err != nil {
		return out, err
	}
	var age string
	if req.OlderThanSec != nil {
		age = (time.Duration(*req.OlderThanSec) * time.Second).String()
	}
	for _, rec := range objects {
		if !req.DryRun {
			if err := s.cfg.Node.DeleteSnapshot(ctx, rec.ID); err != nil && !errdefs.IsNotFound(err) {
				return out, fmt.Errorf("prune snapshot %s: %w", rec.ID, err)
			}
		}
		addPruned(out, rest.PrunedSnapshot{Kind: rest.SnapshotKindObject, Snapshot: rec.ID, Generation: snapshot.ObjectGeneration,
			Bytes: rec.Size, Reason: fmt.Sprintf(reasonObjectAge, age)})
	}
	return out, nil
}

// objectsToPrune checks req and picks p's snapshot objects it asks for.
func (s *Server) objectsToPrune(p Principal, req rest.PruneSnapshotsRequest) ([]*store.SandboxSnapshot, error) {
	switch {
	case !req.Objects && (req.OlderThanSec != nil || req.IncludeNamed):
		return nil, errdefs.New(errdefs.InvalidArgument, "older_than_sec and include_named apply to snapshot objects: set objects too")
	case !req.Objects:
		return nil, nil
	case req.OlderThanSec == nil:
		return nil, errdefs.New(errdefs.InvalidArgument, "objects requires older_than_sec: snapshot objects are user data, say how old they must be (0 for all)")
	case *req.OlderThanSec < 0:
		return nil, errdefs.New(errdefs.InvalidArgument, "older_than_sec must be >= 0, got %d", *req.OlderThanSec)
	}
	list, err := s.cfg.Store.Snapshot().SandboxSnapshots(p.Tenant)
	if err != nil {
		return nil, err
	}
	cutoff := s.cfg.Now().Add(-time.Duration(*req.OlderThanSec) * time.Second)
	var out []*store.SandboxSnapshot
	for _, rec := range list {
		if rec.CreatedAt.After(cutoff) || (rec.Name != "" && !req.IncludeNamed) || rec.Node != s.cfg.Node.ID() {
			continue
		}
		out = append(out, rec)
	}
	return out, nil
}

func addPruned(r *rest.PruneSnapshotsResult, p rest.PrunedSnapshot) {
	r.Removed = append(r.Removed, p)
	r.Bytes += p.Bytes
}

func prunedREST(it node.PruneItem) rest.PrunedSnapshot {
	out := rest.PrunedSnapshot{Kind: it.Kind, Generation: it.Generation, Bytes: it.Bytes, Files: it.Files, Reason: it.Reason}
	if strings.HasPrefix(it.Kind, snapshot.KindObject) {
		out.Snapshot = it.Owner
	} else {
		out.Sandbox = it.Owner
	}
	return out
}

func (s *Server) snapshotUsage(w http.ResponseWriter, r *http.Request, p Principal) error {
	out, err := s.SnapshotUsage(r.Context(), p)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) pruneSnapshots(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req rest.PruneSnapshotsRequest
	if r.ContentLength != 0 { // an empty body prunes what nothing references
		if err := decodeJSON(r, &req); err != nil {
			return err
		}
	}
	out, err := s.PruneSnapshots(r.Context(), p, req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}
