package build

import (
	"context"
	"io"
	"time"
)

// ImageConfig is the runtime configuration of an image.
type ImageConfig struct {
	// Env holds "KEY=value" entries.
	Env        []string
	WorkingDir string
	// User is the default user (name or uid, optionally ":group"); empty is root.
	User       string
	Entrypoint []string
	Cmd        []string
	// Shell is the shell that wraps the shell form of RUN, CMD and
	// ENTRYPOINT; empty means ["/bin/sh", "-c"].
	Shell []string
	// ExposedPorts are "port/proto" entries ("80/tcp"), sorted.
	ExposedPorts []string
	Labels       map[string]string
	StopSignal   string
}

// History describes how one instruction changed an image, as in the
// "history" of an OCI image config.
type History struct {
	CreatedBy string
	Comment   string
	// EmptyLayer is true for instructions that added no layer.
	EmptyLayer bool
	// Created is zero when unknown.
	Created time.Time
}

// Base is a resolved image a stage starts from.
type Base struct {
	// Ref is the image's canonical reference, shown in the build log.
	Ref string
	// Layers are diff IDs, bottom first.
	Layers []string
	Config ImageConfig
}

// Images is the image store as the builder uses it. Its methods must be safe
// for concurrent use: several builds may run at once.
type Images interface {
	// Resolve finds ref in the store, pulling it when absent and pull is
	// true; progress text goes to log. A missing image is errdefs.NotFound.
	Resolve(ctx context.Context, ref string, pull bool, log io.Writer) (Base, error)
	// LayerDir returns the unpacked, read-only directory of a layer, in
	// overlayfs format. It fails (any error) when the layer is gone.
	LayerDir(diffID string) (string, error)
	// CommitLayer records the directory dir, in overlayfs upper format
	// (whiteouts are 0/0 character devices, opaque directories carry the
	// trusted.overlay.opaque xattr), as a layer and returns its diff ID.
	// Paths in exclude (relative, slash-separated) are left out. dir is
	// not modified; the caller removes it afterwards. The new layer must
	// survive until the caller leases it with Lease, which it does at once.
	CommitLayer(ctx context.Context, dir string, exclude []string) (diffID string, err error)
	// Create records an image called name (empty when the build has no
	// tag) with layers (diff IDs, bottom first) and returns its ID. history
	// has one entry per layer that is not EmptyLayer, in order.
	Create(ctx context.Context, name string, layers []string, cfg ImageConfig, history []History) (id string, err error)
	// Lease keeps the layers from being removed until release is called.
	// Layers that are already gone stay gone: the builder checks LayerDir
	// after leasing.
	Lease(diffIDs []string) (release func())
}

// Runner runs a command in a sandbox over a stack of layers.
type Runner interface {
	// Run runs spec.Args and returns its exit status. err is only for
	// failures of the infrastructure; a command that fails returns a
	// non-zero exitCode and a nil err. Run blocks until the command and its
	// sandbox are gone and spec.Output has been written for the last time.
	Run(ctx context.Context, spec RunSpec) (exitCode int, err error)
}

// RunSpec is one command for a Runner.
type RunSpec struct {
	// Layers are read-only layer directories, topmost first.
	Layers []string
	// Upper is an empty directory the builder created; the sandbox's
	// writes land here in overlayfs upper format.
	Upper string
	// Args is argv; the shell form is already wrapped with the stage's
	// SHELL (default ["/bin/sh", "-c"]).
	Args []string
	// Env holds "KEY=value" entries, PATH included.
	Env []string
	// Dir is the absolute working directory.
	Dir string
	// User is the user (name or uid, optionally ":group"), resolved in the
	// sandbox; empty is root.
	User string
	// Network is "none", the only value supported for now.
	Network string
	// Output receives combined stdout and stderr as it is produced.
	Output io.Writer
}

// sandboxFiles are the paths a sandbox leaves in its upper directory for
// itself; they never become part of a layer.
var sandboxFiles = []string{".den", "tmp/.den-tmp-on-rootfs"}
