package node

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/snapshot"
	"github.com/denhq/den/internal/store"
)

// Snapshot storage: what the node's snapshot directory holds and the
// removal of what nothing needs.
//
// What the node leaves behind without a prune (checked against the code,
// not assumed):
//   - Each suspend drops the older generations after it recorded the new
//     one (dropOlderSnapshots), best effort: a failed removal leaves them.
//   - A suspend that fails before its seal removes its unsealed directory
//     (abortSnapshotDir) unless the runtime no longer runs the sandbox;
//     then the directory is kept as the only copy of its state, and the
//     sandbox usually ends failed. A failed Abort leaves it too.
//   - A failed snapshot create removes its object directory; a failed
//     removal, or a DeleteSnapshot whose file removal failed after its
//     record went, leaves an object directory no record names.
//   - A crash leaves .tmp directories, older generations and unrecorded
//     objects, which Recover removes at the next start (pruneSnapshots,
//     pruneObjects), except those of failed sandboxes.
//
// So between restarts the leftovers are: older generations and .tmp
// directories of running or suspended sandboxes, directories of sandboxes
// and objects no record names, and what failed sandboxes keep (until they
// are deleted). PruneSnapshots removes the first two kinds and keeps the
// third, as Recover does.

// Reasons of a PruneItem.
const (
	ReasonOlderGeneration = "older generation: the record pins a newer sealed one"
	ReasonUnsealed        = "unsealed generation left by a failed or interrupted suspend"
	ReasonNoSandbox       = "no sandbox record names it"
	ReasonNoObject        = "no snapshot record names it"
)

// PruneOptions says what PruneSnapshots considers.
type PruneOptions struct {
	// DryRun reports what would be removed and removes nothing.
	DryRun bool
	// Tenant limits the sandboxes considered to the tenant's; "" means
	// every sandbox of the node.
	Tenant string
	// Orphans also removes the directories of sandboxes and snapshot
	// objects that no record names (they belong to no tenant).
	Orphans bool
}

// PruneItem is one directory PruneSnapshots removed, or would remove.
type PruneItem struct {
	snapshot.Entry
	// Reason says why nothing needs it (one of the Reason constants).
	Reason string
}

// PruneReport is what PruneSnapshots removed (or would, in a dry run).
type PruneReport struct {
	Items []PruneItem
	// Bytes and Files are the totals of Items.
	Bytes int64
	Files int
}

func (r *PruneReport) add(entries []snapshot.Entry, reason string) {
	for _, e := range entries {
		r.Items = append(r.Items, PruneItem{Entry: e, Reason: reason})
		r.Bytes += e.Bytes
		r.Files += e.Files
	}
}

// SnapshotUsage reports what the node's snapshot directory holds (see
// snapshot.Store.Usage). Unsupported when suspend is off.
func (n *Node) SnapshotUsage(ctx context.Context) (snapshot.Usage, error) {
	if n.snaps == nil {
		return snapshot.Usage{}, n.errNoSnapshots("")
	}
	return n.snaps.Usage()
}

// PruneSnapshots removes the snapshot files nothing can need:
//   - of each running or suspended sandbox (of opts.Tenant), the sealed
//     generations older than the one its record pins, once that one is
//     sealed, and its unsealed directories (snapshot.Store.Unreferenced);
//   - with opts.Orphans, the directories of sandboxes and snapshot
//     objects that no record names.
//
// It never removes the generation a record pins (a resume and a crash
// mid-resume need it), nor anything of a sandbox in another state: a
// suspend or resume in progress holds the sandbox's lock, which
// PruneSnapshots takes for each sandbox in turn and under which it reads
// the record; states suspending and resuming belong to Recover, and a
// failed sandbox keeps what is left of its state until it is deleted.
// Snapshot objects that have a record are user data: PruneSnapshots
// leaves them (DeleteSnapshot removes one).
//
// It stops at the first error; what was removed so far is reported.
// Unsupported when suspend is off.
func (n *Node) PruneSnapshots(ctx context.Context, opts PruneOptions) (PruneReport, error) {
	var rep PruneReport
	if n.snaps == nil {
		return rep, n.errNoSnapshots("")
	}
	ids, err := n.snaps.IDs()
	if err != nil {
		return rep, fmt.Errorf("prune snapshots: %w", err)
	}
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if err := n.pruneSandbox(id, opts, &rep); err != nil {
			return rep, fmt.Errorf("prune snapshots of sandbox %s: %w", id, err)
		}
	}
	if opts.Orphans {
		if err := n.pruneObjectOrphans(opts, &rep); err != nil {
			return rep, fmt.Errorf("prune snapshot objects: %w", err)
		}
	}
	n.log.Info("snapshots pruned", "dry_run", opts.DryRun, "dirs", len(rep.Items), "bytes", rep.Bytes)
	return rep, nil
}

// pruneSandbox prunes the snapshot directory of sandbox id, under its lock.
func (n *Node) pruneSandbox(id string, opts PruneOptions, rep *PruneReport) error {
	// A record's tenant never changes: another tenant's sandbox is passed
	// over without waiting for its lock.
	if sb, err := n.records.Snapshot().Sandbox(id); err == nil && opts.Tenant != "" && sb.Tenant != opts.Tenant {
		return nil
	}
	unlock := n.locks.lock(id)
	defer unlock()
	sb, err := n.records.Snapshot().Sandbox(id)
	switch {
	case errdefs.IsNotFound(err):
		if !opts.Orphans {
			return nil
		}
		// No record: no suspend or resume can run (both need one) and no
		// resume can ever read these files.
		return n.removeOrphan(n.snaps, id, ReasonNoSandbox, opts.DryRun, rep)
	case err != nil:
		return err
	case opts.Tenant != "" && sb.Tenant != opts.Tenant, sb.Node != n.cfg.ID:
		return nil
	case sb.State != store.StateRunning && sb.State != store.StateSuspended:
		return nil // in transition (Recover's), failed (kept until deleted), or starting/stopping
	}
	var pinned uint64
	if sb.Snapshot != nil {
		pinned = sb.Snapshot.Generation
	}
	unsealed, older, err := n.unreferenced(id, pinned)
	if err != nil {
		return err
	}
	if err := n.removeEntries(n.snaps, older, ReasonOlderGeneration, opts.DryRun, rep); err != nil {
		return err
	}
	return n.removeEntries(n.snaps, unsealed, ReasonUnsealed, opts.DryRun, rep)
}

// unreferenced splits snapshot.Store.Unreferenced into unsealed and older
// sealed generations.
func (n *Node) unreferenced(id string, pinned uint64) (unsealed, older []snapshot.Entry, err error) {
	entries, err := n.snaps.Unreferenced(id, pinned)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		if e.Kind == snapshot.KindPending {
			unsealed = append(unsealed, e)
		} else {
			older = append(older, e)
		}
	}
	return unsealed, older, nil
}

// pruneObjectOrphans removes the directories of snapshot objects that no
// record names. A CreateSnapshot in progress writes its directory before
// its record exists, holding the lock of its source sandbox, which is
// running: so the candidates are listed first, then the lock of every
// running sandbox of the node is taken (which waits for those creates to
// end), and a candidate goes only if it still has no record. A create
// that starts after the listing has a new ID, not a candidate's.
func (n *Node) pruneObjectOrphans(opts PruneOptions, rep *PruneReport) error {
	ids, err := n.objs.IDs()
	if err != nil {
		return err
	}
	var candidates []string
	for _, id := range ids {
		if _, err := n.records.Snapshot().SandboxSnapshot(id); errdefs.IsNotFound(err) {
			candidates = append(candidates, id)
		}
	}
	if len(candidates) == 0 {
		return nil
	}
	unlock, err := n.lockRunning()
	if err != nil {
		return err
	}
	defer unlock()
	snap := n.records.Snapshot()
	for _, id := range candidates {
		if _, err := snap.SandboxSnapshot(id); !errdefs.IsNotFound(err) {
			continue // recorded meanwhile: a create that was in progress
		}
		if err := n.removeOrphan(n.objs, id, ReasonNoObject, opts.DryRun, rep); err != nil {
			return err
		}
	}
	return nil
}

// lockRunning takes the locks of every running sandbox of the node, in
// order of ID, and returns their release. No other operation holds two
// sandbox locks at once, so this cannot deadlock with them; two calls
// take the locks in the same order.
func (n *Node) lockRunning() (unlock func(), err error) {
	list, err := n.allOnNode()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, sb := range list {
		if sb.State == store.StateRunning {
			ids = append(ids, sb.ID)
		}
	}
	slices.Sort(ids)
	unlocks := make([]func(), 0, len(ids))
	for _, id := range ids {
		unlocks = append(unlocks, n.locks.lock(id))
	}
	return func() {
		for _, u := range slices.Backward(unlocks) {
			u()
		}
	}, nil
}

// removeOrphan removes the whole directory of id in st (unless dryRun)
// and reports what it held.
func (n *Node) removeOrphan(st *snapshot.Store, id, reason string, dryRun bool, rep *PruneReport) error {
	entries, err := st.Owned(id)
	if err != nil {
		return err
	}
	if err := n.removeEntries(st, entries, reason, dryRun, rep); err != nil || dryRun {
		return err
	}
	return st.Remove(id)
}

// removeEntries removes entries from st (unless dryRun) and reports them.
func (n *Node) removeEntries(st *snapshot.Store, entries []snapshot.Entry, reason string, dryRun bool, rep *PruneReport) error {
	var errs []error
	for _, e := range entries {
		if !dryRun {
			if err := st.RemoveEntry(e); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		rep.add([]snapshot.Entry{e}, reason)
	}
	return errors.Join(errs...)
}
