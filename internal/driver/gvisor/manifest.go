package gvisor

import (
	"os"
	"path/filepath"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/denhq/den/internal/driver/ckptdir"
)

// A checkpoint directory holds runsc's files and den's manifest:
//
//	checkpoint.img      the kernel state (runsc: processes, the rootfs overlay's metadata, ...)
//	pages_meta.img      which memory pages pages.img holds
//	pages.img           the memory, including the rootfs overlay's file data
//	den-checkpoint.json the manifest, written last: a directory without it
//	                    holds no complete checkpoint
const manifestName = ckptdir.ManifestName

// runscFiles are the files `runsc checkpoint` writes (uncompressed, with
// a pages file); a failed checkpoint may leave them empty.
var runscFiles = []string{"checkpoint.img", "pages_meta.img", "pages.img"}

// manifestFormat names the manifest layout.
const manifestFormat = "den-gvisor-checkpoint/1"

// manifest describes a checkpoint: what a sandbox restored from it must
// match, and the sizes of runsc's files (a cheap check against truncation;
// the caller checksums the files).
type manifest struct {
	ckptdir.Header
	SandboxID string `json:"sandbox_id"`
	// Platform is the runsc platform the state was saved on; a restore
	// uses the same.
	Platform string `json:"platform"`
	// Layers are the host overlay's image layers the saved filesystem
	// stands on (empty for sandboxes that predate state version 3).
	Layers []string `json:"layers,omitempty"`
	// GuestBinary is the installed guest binary the sandbox ran (empty
	// for sandboxes that predate the record); a restore binds the same.
	GuestBinary string `json:"guest_binary,omitempty"`
	// DiskLimitBytes is the size of the rootfs overlay (0: unlimited).
	DiskLimitBytes uint64 `json:"disk_limit_bytes,omitempty"`
	// Process is the OCI process the sandbox was started with: runsc
	// restores only into a bundle whose process args and env are the
	// checkpoint's, so a clone reuses it (nil for older checkpoints).
	Process *specs.Process `json:"process,omitempty"`
}

// writeManifest records the checkpoint runsc just wrote into dir, of the
// sandbox whose OCI process is proc.
func writeManifest(dir, id string, st sandboxState, proc *specs.Process) error {
	m := manifest{
		SandboxID: id, Platform: st.Platform, Layers: st.Layers, GuestBinary: st.GuestBinary,
		DiskLimitBytes: st.DiskLimitBytes, Process: proc,
	}
	return ckptdir.Write(dir, manifestFormat, runscFiles, &m)
}

// readManifest reads and checks the manifest in dir: InvalidArgument when
// dir holds no complete checkpoint.
func readManifest(dir string) (manifest, error) {
	var m manifest
	err := ckptdir.Read(dir, manifestFormat, "gVisor", &m, func() []string { return runscFiles })
	return m, err
}

// sameLayers reports whether a sandbox on layers can run m's filesystem.
// A manifest without layers (an older sandbox) matches any.
func (m manifest) sameLayers(layers []string) bool {
	return len(m.Layers) == 0 || slices.Equal(m.Layers, layers)
}

// removeCheckpointFiles removes what a failed checkpoint left in dir.
func removeCheckpointFiles(dir string) {
	for _, name := range append([]string{manifestName}, runscFiles...) {
		_ = os.Remove(filepath.Join(dir, name))
	}
}
