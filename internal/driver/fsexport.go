package driver

import "context"

// FilesystemExporter is an optional interface: save what a running
// sandbox wrote to its root filesystem, without its memory or processes,
// so that new sandboxes can boot cold on the image plus those changes
// (den snapshot create --mode filesystem). Drivers without a root
// filesystem of their own (no isolation) do not implement it.
type FilesystemExporter interface {
	// ExportFilesystem writes the changes running sandbox id made to its
	// root filesystem, relative to its Spec.Image.Layers, into dir: an
	// empty directory the caller created on the data dir's file system,
	// which the caller owns (ExportFilesystem never removes it).
	//
	// dir receives an overlayfs upper directory, the format of
	// Spec.UpperDir: new and changed files with their content, mode,
	// owner, times and xattrs (POSIX ACLs excepted); deleted names as
	// whiteouts (0/0 character devices); directories that replace a lower
	// one as opaque (xattr trusted.overlay.opaque "y"); hard links kept.
	// Sockets are left out. Stacked on the image's layers as the topmost
	// lower layer, it shows the sandbox's root filesystem as it was, less
	// the driver's own mount points (/proc, /dev, the guest channel).
	//
	// The sandbox keeps running and its processes are not stopped: the
	// tree's structure (names, links, deletions) is one consistent moment,
	// a file's content is read at one moment, but files written while the
	// export runs may be seen at different moments from one another.
	//
	// NotFound for unknown IDs; FailedPrecondition for a sandbox that is
	// not running (suspended included), or whose root filesystem is a
	// caller's Spec.UpperDir (its changes are already there);
	// InvalidArgument when dir is not an empty directory. On error dir may
	// hold part of the tree: the caller removes it.
	ExportFilesystem(ctx context.Context, id string, dir string) error
}
