package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/snapshot"
	"github.com/denhq/den/internal/store"
)

// Snapshot objects: the saved state of a running sandbox kept as an object
// of its own (store.SandboxSnapshot), which new sandboxes are cloned from
// (see StartClones). The files lie in the node's snapshot directory under
// objects/<snapshot id>/1/, sealed and verified like a suspend's.

// snapshotOp is the state of one CreateSnapshot.
type snapshotOp struct {
	objectOp
	spec   driver.Spec
	ref    snapshot.Ref
	sealed bool
}

// objectOp is what a snapshot create of either mode works on: the record
// (what the caller asked for, completed on the way) and the directory of
// its files under objects/.
type objectOp struct {
	rec     *store.SandboxSnapshot
	pending *snapshot.Pending
}

// CreateSnapshot saves the whole state of running sandbox rec.Sandbox
// (memory, processes, files) as snapshot object rec.ID, which the sandbox
// goes on running (its processes pause while the state is written, and
// its guest connections are cut). The caller sets rec's ID, Tenant,
// Sandbox and optional Name; the rest is filled in from the sandbox and
// the files. The record is stored only once the files are sealed, so a
// snapshot in the store is always complete; on error nothing is left.
// With rec.Mode store.SnapshotModeFilesystem it saves the sandbox's root
// filesystem changes only, as an image (see snapshot_fs.go); the
// sandbox's processes and guest connections are not disturbed then.
//
// Steps: check → create the dir → checkpoint on the driver → seal →
// record. Errors: Unsupported when suspend is off (for mode filesystem:
// when the driver cannot export a filesystem or the node has no image
// store), FailedPrecondition when the sandbox is not running, NotFound,
// AlreadyExists when the tenant has a snapshot of that name.
func (n *Node) CreateSnapshot(ctx context.Context, rec *store.SandboxSnapshot) (*store.SandboxSnapshot, error) {
	if rec.IsFilesystem() {
		unlock := n.locks.lock(rec.Sandbox)
		defer unlock()
		return n.createFilesystemSnapshot(ctx, rec)
	}
	if n.objs == nil || n.suspender(rec.Sandbox) == nil {
		return nil, n.errNoSnapshots(rec.Sandbox)
	}
	unlock := n.locks.lock(rec.Sandbox)
	defer unlock()
	op := &snapshotOp{objectOp: objectOp{rec: rec.Clone()}}
	if err := runOp(ctx, n, "snapshot", op, n.snapshotSteps()); err != nil {
		return nil, err
	}
	n.log.Info("snapshot created", "sandbox", rec.Sandbox, "snapshot", rec.ID, "bytes", op.ref.Size)
	return op.rec, nil
}

// Snapshot step names.
const (
	stepCheckSnapshot  = "check sandbox"
	stepObjectDir      = "create object dir"
	stepCheckpoint     = "checkpoint on driver"
	stepSealObject     = "seal object"
	stepRecordSnapshot = "record snapshot"
)

func (n *Node) snapshotSteps() []opStep[snapshotOp] {
	return []opStep[snapshotOp]{
		{name: stepCheckSnapshot, do: n.checkSnapshotSource},
		{name: stepObjectDir, do: n.createObjectDir, undo: n.removeObjectDir},
		{name: stepCheckpoint, do: n.checkpointOnDriver},
		{name: stepSealObject, do: n.sealObject},
		{name: stepRecordSnapshot, do: n.recordSnapshot},
	}
}

// errNoSnapshots says why sandbox id cannot be snapshotted.
func (n *Node) errNoSnapshots(id string) error {
	d := n.drv(id)
	if _, ok := d.(driver.Suspender); ok {
		return errdefs.New(errdefs.Unsupported, "node %s cannot snapshot sandboxes: it has no snapshot directory", n.cfg.ID)
	}
	return errdefs.New(errdefs.Unsupported, "runtime %s cannot snapshot sandboxes", d.Capabilities().Name)
}

// checkSnapshotSource reads the source's record and resolves its spec.
func (n *Node) checkSnapshotSource(ctx context.Context, op *snapshotOp) error {
	sb, err := n.runningSource(&op.objectOp, store.SnapshotModeMemory)
	if err != nil {
		return err
	}
	img, err := n.cfg.Images.Rootfs(sb.Image)
	if err != nil {
		return fmt.Errorf("snapshot sandbox %s: resolve image %s: %w", sb.ID, sb.Image, err)
	}
	op.spec = specOf(sb, img)
	return nil
}

// runningSource reads the record of op's source sandbox, which must be
// running, and completes op's record from it for a snapshot of mode.
func (n *Node) runningSource(op *objectOp, mode string) (*store.Sandbox, error) {
	id := op.rec.Sandbox
	sb, err := n.records.Snapshot().Sandbox(id)
	if err != nil {
		return nil, err
	}
	if sb.State != store.StateRunning {
		return nil, errdefs.New(errdefs.FailedPrecondition, "sandbox %s is %s: only a running sandbox can be snapshotted", id, sb.State)
	}
	r := op.rec
	r.Mode, r.Node, r.Runtime, r.Image = mode, n.cfg.ID, n.drv(id).Capabilities().Name, sb.Image
	r.CPUs, r.MemoryMB, r.DiskMB, r.Env, r.User = sb.CPUs, sb.MemoryMB, sb.DiskMB, sb.Env, sb.User
	return sb, nil
}

func (n *Node) createObjectDir(ctx context.Context, op *snapshotOp) error {
	return n.beginObjectDir(&op.objectOp)
}

func (n *Node) removeObjectDir(ctx context.Context, op *snapshotOp, _ error) {
	n.removeObjectFiles(&op.objectOp)
}

// beginObjectDir creates the directory of op's files.
func (n *Node) beginObjectDir(op *objectOp) error {
	p, err := n.objs.Begin(op.rec.ID, snapshot.ObjectGeneration)
	if err != nil {
		return fmt.Errorf("snapshot sandbox %s: %w", op.rec.Sandbox, err)
	}
	op.pending = p
	return nil
}

// removeObjectFiles removes the files of a snapshot that was not recorded.
func (n *Node) removeObjectFiles(op *objectOp) {
	if err := n.objs.Remove(op.rec.ID); err != nil {
		n.log.Warn("remove files of a failed snapshot", "snapshot", op.rec.ID, "err", err)
	}
}

func (n *Node) checkpointOnDriver(ctx context.Context, op *snapshotOp) error {
	if err := n.suspender(op.rec.Sandbox).Checkpoint(ctx, op.rec.Sandbox, op.pending.Dir); err != nil {
		return fmt.Errorf("snapshot sandbox %s: %w", op.rec.Sandbox, err)
	}
	return nil
}

func (n *Node) sealObject(ctx context.Context, op *snapshotOp) error {
	spec, err := json.Marshal(op.spec)
	if err != nil {
		return fmt.Errorf("snapshot sandbox %s: encode spec: %w", op.rec.Sandbox, err)
	}
	ref, err := op.pending.Seal(snapshot.Meta{Driver: op.rec.Runtime, Spec: spec, Created: n.cfg.Now()})
	if err != nil {
		return fmt.Errorf("snapshot sandbox %s: %w", op.rec.Sandbox, err)
	}
	op.ref, op.sealed = ref, true
	op.rec.Size, op.rec.Digest = ref.Size, ref.Digest
	return nil
}

func (n *Node) recordSnapshot(ctx context.Context, op *snapshotOp) error {
	return n.recordObject(ctx, &op.objectOp)
}

// recordObject stores op's record: the snapshot exists from now on.
func (n *Node) recordObject(ctx context.Context, op *objectOp) error {
	op.rec.CreatedAt = n.cfg.Now().UTC()
	if err := n.records.CreateSandboxSnapshot(ctx, op.rec); err != nil {
		return fmt.Errorf("record snapshot %s: %w", op.rec.ID, err)
	}
	return nil
}

// DeleteSnapshot removes snapshot object id: its record, then its files
// (for mode filesystem: its image once no sandbox created from it is
// left, see pruneSnapshotImages). Sandboxes cloned or created from it are
// not affected. NotFound when there is no such record; files and images
// left by a failure are removed by Recover.
func (n *Node) DeleteSnapshot(ctx context.Context, id string) error {
	rec, err := n.deleteSnapshot(ctx, id)
	if err != nil || !rec.IsFilesystem() {
		return err
	}
	return n.pruneSnapshotImages() // after the unlock: it takes the lock of each image's snapshot
}

// deleteSnapshot is DeleteSnapshot under the snapshot's lock, but for
// the image of a filesystem snapshot. It returns the deleted record.
func (n *Node) deleteSnapshot(ctx context.Context, id string) (*store.SandboxSnapshot, error) {
	unlock := n.locks.lock(objectLockKey(id))
	defer unlock()
	rec, err := n.records.Snapshot().SandboxSnapshot(id)
	if err != nil {
		return nil, err
	}
	if err := n.records.DeleteSandboxSnapshot(ctx, id); err != nil {
		return nil, err
	}
	if n.objs == nil {
		return rec, nil
	}
	if err := n.objs.Remove(id); err != nil {
		return nil, fmt.Errorf("delete snapshot %s: %w", id, err)
	}
	return rec, nil
}

// objectLockKey is the key of snapshot object id in Node.locks, apart
// from every sandbox ID.
func objectLockKey(id string) string { return "snapshot/" + id }

// verifyObject checks the files of snapshot object rec against its record
// and returns their directory and the spec of the sandbox they hold.
func (n *Node) verifyObject(rec *store.SandboxSnapshot) (string, driver.Spec, error) {
	var spec driver.Spec
	if rec.IsFilesystem() {
		return "", spec, errdefs.New(errdefs.FailedPrecondition, "snapshot %s holds files only: sandboxes boot cold on its image %s", rec.ID, rec.FilesystemImage)
	}
	if n.objs == nil {
		return "", spec, n.errNoSnapshots("")
	}
	if rec.Node != n.cfg.ID {
		return "", spec, errdefs.New(errdefs.FailedPrecondition, "snapshot %s is on node %s, not %s", rec.ID, rec.Node, n.cfg.ID)
	}
	dir, m, err := n.objs.Verify(rec.ID, snapshot.Ref{Generation: snapshot.ObjectGeneration, Size: rec.Size, Digest: rec.Digest})
	if err != nil {
		return "", spec, fmt.Errorf("snapshot %s: %w", rec.ID, err)
	}
	if err := json.Unmarshal(m.Spec, &spec); err != nil || spec.ID == "" {
		return "", spec, errdefs.New(errdefs.FailedPrecondition, "snapshot %s holds no sandbox spec", rec.ID)
	}
	return dir, spec, nil
}

// pruneObjects removes the files of snapshot objects no record names (a
// create or delete interrupted by a crash), and the images of filesystem
// snapshots no record names.
func (n *Node) pruneObjects() error {
	if err := n.pruneSnapshotImages(); err != nil {
		return err
	}
	if n.objs == nil {
		return nil
	}
	ids, err := n.objs.IDs()
	if err != nil {
		return fmt.Errorf("recover snapshot objects: %w", err)
	}
	snap := n.records.Snapshot()
	var errs []error
	for _, id := range ids {
		if _, err := snap.SandboxSnapshot(id); errdefs.IsNotFound(err) {
			errs = append(errs, n.objs.Remove(id))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("recover snapshot objects: %w", err)
	}
	return nil
}
