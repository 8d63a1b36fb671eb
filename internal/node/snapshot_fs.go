package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/store"
)

// Filesystem snapshots (mode filesystem): the root filesystem changes of
// a running sandbox, without memory or processes, kept as one more layer
// on the sandbox's image in the node's image store. The snapshot record
// names an untagged image made of the source image's layers and that
// layer, with the source image's config; a sandbox created from the
// snapshot is an ordinary cold create on that image (its record names
// the image). The image in the index is what keeps image GC off the
// layer; once neither the snapshot nor a sandbox created from it is left,
// the image is removed (pruneSnapshotImages), and with it the layer
// unless another image or a mount uses it.

// ImageCommitter is what filesystem snapshots need of the image store
// (*image.Store).
type ImageCommitter interface {
	Get(ref string) (*image.Image, error)
	List() ([]image.Image, error)
	CommitLayer(ctx context.Context, dir string, exclude []string) (image.Layer, error)
	Lease(diffIDs []string) (release func())
	Create(ctx context.Context, name string, layers []string, cfg image.Config, history []image.History) (*image.Image, error)
	Remove(ref string) error
}

// SnapshotLabel is the image config label that names the filesystem
// snapshot an image was made for. Recover removes untagged images with it
// that no snapshot record names (a create or delete cut short).
const SnapshotLabel = "den.snapshot"

// fsSnapshotOp is the state of one filesystem CreateSnapshot.
type fsSnapshotOp struct {
	objectOp
	base     *image.Image
	exporter driver.FilesystemExporter
	layer    image.Layer
	releases []func() // leases on the base layers and the new layer
	img      *image.Image
}

// Filesystem snapshot step names.
const (
	stepCheckFSSnapshot = "check sandbox"
	stepExportDir       = "create export dir"
	stepExport          = "export filesystem on driver"
	stepCommitLayer     = "commit layer"
	stepCreateImage     = "create image"
	stepDropExport      = "remove export dir"
	stepRecordFS        = "record snapshot"
)

func (n *Node) fsSnapshotSteps() []opStep[fsSnapshotOp] {
	return []opStep[fsSnapshotOp]{
		{name: stepCheckFSSnapshot, do: n.checkFSSnapshotSource},
		{name: stepExportDir, do: n.createExportDir, undo: n.removeExportDir},
		{name: stepExport, do: n.exportOnDriver},
		{name: stepCommitLayer, do: n.commitSnapshotLayer},
		{name: stepCreateImage, do: n.createSnapshotImage, undo: n.removeSnapshotImage},
		{name: stepDropExport, do: n.dropExportDir},
		{name: stepRecordFS, do: n.recordFSSnapshot},
	}
}

// createFilesystemSnapshot is CreateSnapshot for mode filesystem: check
// → create the export dir → export on the driver → commit the layer →
// create the image → remove the export dir → record. The record is
// stored last, so a snapshot in the store always has its image; on error
// nothing is left (a crash leaves an image and files that Recover
// removes). Preconditions: rec.Sandbox's lock is held; it takes rec.ID's.
func (n *Node) createFilesystemSnapshot(ctx context.Context, rec *store.SandboxSnapshot) (*store.SandboxSnapshot, error) {
	unlock := n.locks.lock(objectLockKey(rec.ID)) // keeps pruneSnapshotImages off the new image
	defer unlock()
	exp, ok := n.drv(rec.Sandbox).(driver.FilesystemExporter)
	switch {
	case !ok:
		return nil, errdefs.New(errdefs.Unsupported, "runtime %s cannot snapshot a sandbox's filesystem", n.drv(rec.Sandbox).Capabilities().Name)
	case n.objs == nil || n.cfg.Layers == nil:
		return nil, errdefs.New(errdefs.Unsupported, "node %s cannot snapshot a sandbox's filesystem: it has no snapshot directory or image store", n.cfg.ID)
	}
	op := &fsSnapshotOp{objectOp: objectOp{rec: rec.Clone()}, exporter: exp}
	defer func() {
		for _, release := range op.releases {
			release()
		}
	}()
	if err := runOp(ctx, n, "snapshot", op, n.fsSnapshotSteps()); err != nil {
		return nil, err
	}
	n.log.Info("filesystem snapshot created", "sandbox", rec.Sandbox, "snapshot", rec.ID, "image", op.img.ID, "bytes", op.layer.Size)
	return op.rec, nil
}

// checkFSSnapshotSource reads the source's record and its image, and
// leases the image's layers until the new image holds them.
func (n *Node) checkFSSnapshotSource(ctx context.Context, op *fsSnapshotOp) error {
	sb, err := n.runningSource(&op.objectOp, store.SnapshotModeFilesystem)
	if err != nil {
		return err
	}
	base, err := n.cfg.Layers.Get(sb.Image)
	if err != nil {
		return fmt.Errorf("snapshot sandbox %s: resolve image %s: %w", sb.ID, sb.Image, err)
	}
	op.releases = append(op.releases, n.cfg.Layers.Lease(base.Layers))
	op.base = base
	return nil
}

// createExportDir makes the export's directory where the snapshot's
// memory files would go: Recover removes it when no record names it.
func (n *Node) createExportDir(ctx context.Context, op *fsSnapshotOp) error {
	return n.beginObjectDir(&op.objectOp)
}

func (n *Node) removeExportDir(ctx context.Context, op *fsSnapshotOp, _ error) {
	n.removeObjectFiles(&op.objectOp)
}

func (n *Node) exportOnDriver(ctx context.Context, op *fsSnapshotOp) error {
	if err := op.exporter.ExportFilesystem(ctx, op.rec.Sandbox, op.pending.Dir); err != nil {
		return fmt.Errorf("snapshot sandbox %s: %w", op.rec.Sandbox, err)
	}
	return nil
}

// commitSnapshotLayer stores the export as a layer and leases it until
// the image holds it.
func (n *Node) commitSnapshotLayer(ctx context.Context, op *fsSnapshotOp) error {
	l, err := n.cfg.Layers.CommitLayer(ctx, op.pending.Dir, nil)
	if err != nil {
		return fmt.Errorf("snapshot sandbox %s: %w", op.rec.Sandbox, err)
	}
	op.releases = append(op.releases, n.cfg.Layers.Lease([]string{l.DiffID}))
	op.layer = l
	return nil
}

// createSnapshotImage records the untagged image of the snapshot: the
// base image's layers and config plus the new layer, labelled with the
// snapshot's ID (which also makes its ID its own).
func (n *Node) createSnapshotImage(ctx context.Context, op *fsSnapshotOp) error {
	cfg := op.base.Config
	cfg.Labels = maps.Clone(cfg.Labels)
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	cfg.Labels[SnapshotLabel] = op.rec.ID
	history := append(slices.Clone(op.base.History), image.History{
		Created:   n.cfg.Now().UTC(),
		CreatedBy: "den snapshot create --mode filesystem " + op.rec.Sandbox,
		Comment:   "snapshot " + op.rec.ID,
	})
	layers := append(slices.Clone(op.base.Layers), op.layer.DiffID)
	img, err := n.cfg.Layers.Create(ctx, "", layers, cfg, history)
	if err != nil {
		return fmt.Errorf("snapshot sandbox %s: %w", op.rec.Sandbox, err)
	}
	op.img = img
	r := op.rec
	r.FilesystemImage, r.FilesystemLayer, r.Size, r.Digest = img.ID, op.layer.DiffID, op.layer.Size, img.Digest
	if r.Digest == "" {
		r.Digest = img.ID // a base image recorded without blobs has no manifest
	}
	return nil
}

func (n *Node) removeSnapshotImage(ctx context.Context, op *fsSnapshotOp, _ error) {
	if err := n.cfg.Layers.Remove(op.img.ID); err != nil {
		n.log.Warn("remove the image of a failed snapshot", "snapshot", op.rec.ID, "image", op.img.ID, "err", err)
	}
}

// dropExportDir removes the export, which the layer now holds.
func (n *Node) dropExportDir(ctx context.Context, op *fsSnapshotOp) error {
	if err := n.objs.Remove(op.rec.ID); err != nil {
		return fmt.Errorf("snapshot sandbox %s: %w", op.rec.Sandbox, err)
	}
	return nil
}

// recordFSSnapshot stores the record: the snapshot exists from now on.
func (n *Node) recordFSSnapshot(ctx context.Context, op *fsSnapshotOp) error {
	return n.recordObject(ctx, &op.objectOp)
}

// pruneSnapshotImages removes the untagged images of filesystem
// snapshots that no snapshot record and no sandbox record names: those of
// deleted snapshots once no sandbox created from them is left (they boot
// on the image, and suspend, resume and recovery resolve it again), and
// those a crash left between creating the image and recording the
// snapshot. Each is checked under its snapshot's lock, so an image whose
// snapshot is being created is never taken. An image someone tagged (den
// image tag) is theirs and stays. Run by DeleteSnapshot and Recover.
func (n *Node) pruneSnapshotImages() error {
	if n.cfg.Layers == nil {
		return nil
	}
	imgs, err := n.cfg.Layers.List()
	if err != nil {
		return fmt.Errorf("prune snapshot images: %w", err)
	}
	var errs []error
	for _, img := range imgs {
		snapID := img.Config.Labels[SnapshotLabel]
		if img.Name != "" || snapID == "" {
			continue
		}
		errs = append(errs, n.pruneSnapshotImage(img.ID, snapID))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("prune snapshot images: %w", err)
	}
	return nil
}

// pruneSnapshotImage removes image id of snapshot snapID unless a record
// names it.
func (n *Node) pruneSnapshotImage(id, snapID string) error {
	unlock := n.locks.lock(objectLockKey(snapID))
	defer unlock()
	used, err := n.snapshotImageUsed(id)
	if err != nil || used {
		return err
	}
	n.log.Info("removing the image of a deleted snapshot", "image", id, "snapshot", snapID)
	if err := n.cfg.Layers.Remove(id); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// snapshotImageUsed reports whether a snapshot or sandbox record names
// image id.
func (n *Node) snapshotImageUsed(id string) (bool, error) {
	snap := n.records.Snapshot()
	recs, err := snap.SandboxSnapshots("")
	if err != nil {
		return false, err
	}
	for _, r := range recs {
		if r.FilesystemImage == id {
			return true, nil
		}
	}
	sbs, _, err := snap.Sandboxes(store.SandboxFilter{})
	if err != nil {
		return false, err
	}
	for _, sb := range sbs {
		if sb.Image == id {
			return true, nil
		}
	}
	return false, nil
}
