package gvisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/denhq/den/internal/errdefs"
)

// A checkpoint directory holds runsc's files and den's manifest:
//
//	checkpoint.img      the kernel state (runsc: processes, the rootfs overlay's metadata, ...)
//	pages_meta.img      which memory pages pages.img holds
//	pages.img           the memory, including the rootfs overlay's file data
//	den-checkpoint.json the manifest, written last: a directory without it
//	                    holds no complete checkpoint
const manifestName = "den-checkpoint.json"

// runscFiles are the files `runsc checkpoint` writes (uncompressed, with
// a pages file); a failed checkpoint may leave them empty.
var runscFiles = []string{"checkpoint.img", "pages_meta.img", "pages.img"}

// manifestFormat names the manifest layout.
const manifestFormat = "den-gvisor-checkpoint/1"

// manifest describes a checkpoint: what a sandbox restored from it must
// match, and the sizes of runsc's files (a cheap check against truncation;
// the caller checksums the files).
type manifest struct {
	Format    string `json:"format"`
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
	Process   *specs.Process   `json:"process,omitempty"`
	Files     map[string]int64 `json:"files"`
	CreatedAt time.Time        `json:"created_at"`
}

// writeManifest records the checkpoint runsc just wrote into dir, of the
// sandbox whose OCI process is proc.
func writeManifest(dir, id string, st sandboxState, proc *specs.Process) error {
	m := manifest{
		Format: manifestFormat, SandboxID: id, Platform: st.Platform, Layers: st.Layers, GuestBinary: st.GuestBinary,
		DiskLimitBytes: st.DiskLimitBytes, Process: proc, Files: map[string]int64{}, CreatedAt: time.Now().UTC(),
	}
	for _, name := range runscFiles {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("checkpoint file: %w", err)
		}
		m.Files[name] = info.Size()
	}
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, manifestName), data, 0o644); err != nil {
		return fmt.Errorf("write checkpoint manifest: %w", err)
	}
	return nil
}

// readManifest reads and checks the manifest in dir: InvalidArgument when
// dir holds no complete checkpoint.
func readManifest(dir string) (manifest, error) {
	var m manifest
	if !filepath.IsAbs(dir) {
		return m, errdefs.New(errdefs.InvalidArgument, "checkpoint dir %q is not an absolute path", dir)
	}
	data, err := os.ReadFile(filepath.Join(dir, manifestName))
	if errors.Is(err, os.ErrNotExist) {
		return m, errdefs.New(errdefs.InvalidArgument, "no complete checkpoint in %s (no %s)", dir, manifestName)
	}
	if err != nil {
		return m, errdefs.Wrap(errdefs.InvalidArgument, err, "read checkpoint manifest")
	}
	if err := json.Unmarshal(data, &m); err != nil || m.Format != manifestFormat {
		return m, errdefs.New(errdefs.InvalidArgument, "%s is not a den gVisor checkpoint manifest", filepath.Join(dir, manifestName))
	}
	for _, name := range runscFiles {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil || info.Size() != m.Files[name] {
			return m, errdefs.New(errdefs.InvalidArgument, "checkpoint in %s is incomplete: %s is missing or has the wrong size", dir, name)
		}
	}
	return m, nil
}

// sameLayers reports whether a sandbox on layers can run m's filesystem.
// A manifest without layers (an older sandbox) matches any.
func (m manifest) sameLayers(layers []string) bool {
	return len(m.Layers) == 0 || slices.Equal(m.Layers, layers)
}

// checkEmptyDir checks that dir is an absolute path of an existing, empty
// directory: InvalidArgument otherwise.
func checkEmptyDir(dir string) error {
	if !filepath.IsAbs(dir) {
		return errdefs.New(errdefs.InvalidArgument, "checkpoint dir %q is not an absolute path", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "checkpoint dir")
	}
	if len(entries) > 0 {
		return errdefs.New(errdefs.InvalidArgument, "checkpoint dir %s is not empty", dir)
	}
	return nil
}

// removeCheckpointFiles removes what a failed checkpoint left in dir.
func removeCheckpointFiles(dir string) {
	for _, name := range append([]string{manifestName}, runscFiles...) {
		_ = os.Remove(filepath.Join(dir, name))
	}
}
