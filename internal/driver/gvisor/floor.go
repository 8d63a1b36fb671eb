package gvisor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// MeasureRawFloor times n iterations of the fastest raw runsc path to a
// first command: `runsc create` + `runsc start` of a bundle running sleep
// on rootfsDir (read-only, so nothing is written into it), then
// `runsc exec ID echo ok` until its output is read. The following
// `delete -force` is not timed. It is the floor den's create+first exec is
// compared to. platform is a runsc platform ("systrap", "ptrace").
func MeasureRawFloor(ctx context.Context, runscPath, rootfsDir, platform string, n int) ([]time.Duration, error) {
	dir, err := os.MkdirTemp("", "den-runsc-floor-")
	if err != nil {
		return nil, fmt.Errorf("measure runsc floor: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := writeFloorBundle(dir, rootfsDir); err != nil {
		return nil, fmt.Errorf("measure runsc floor: %w", err)
	}
	r := runsc{path: runscPath, root: filepath.Join(dir, "root")}
	defer r.unmountNullNetNS() // before the RemoveAll above, which it would fail
	var out []time.Duration
	for i := range n {
		d, err := floorOnce(ctx, r, dir, platform, fmt.Sprintf("floor-%d-%d", os.Getpid(), i))
		if err != nil {
			return out, fmt.Errorf("measure runsc floor: %w", err)
		}
		out = append(out, d)
	}
	return out, nil
}

// floorOnce is one timed create+start+exec, then an untimed delete.
func floorOnce(ctx context.Context, r runsc, bundle, platform, id string) (time.Duration, error) {
	flags := []string{"--platform=" + platform, "--network=none", "--host-settings=" + HostSettingsAdjust}
	logPath := filepath.Join(bundle, "runsc.log")
	defer r.deleteForce(context.WithoutCancel(ctx), id) //nolint:errcheck // best effort; the temp root is removed after
	begin := time.Now()
	if err := r.detached(ctx, logPath, append(flags, "create", "--bundle", bundle, id)...); err != nil {
		return 0, err
	}
	if err := r.detached(ctx, logPath, append(flags, "start", id)...); err != nil {
		return 0, err
	}
	out, err := r.output(ctx, "exec", id, "/bin/echo", "ok")
	if err != nil {
		return 0, err
	}
	took := time.Since(begin)
	if strings.TrimSpace(string(out)) != "ok" {
		return 0, fmt.Errorf("runsc exec echo: unexpected output %q", out)
	}
	return took, nil
}

// writeFloorBundle writes a config.json running sleep on a read-only rootfs.
func writeFloorBundle(dir, rootfsDir string) error {
	return writeFloorBundleArgs(dir, rootfsDir, []string{"/bin/sleep", "1000000"})
}

// writeFloorBundleArgs writes a config.json running args on a read-only rootfs.
func writeFloorBundleArgs(dir, rootfsDir string, args []string) error {
	spec := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: rootfsDir, Readonly: true},
		Process: &specs.Process{
			Args: args,
			Env:  []string{defaultPath},
			Cwd:  "/",
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs"},
		},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace},
			{Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
		}},
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600)
}

// CheckpointTiming is one raw runsc checkpoint and restore.
type CheckpointTiming struct {
	// Checkpoint is `runsc checkpoint` until it exits (the sandbox stops).
	Checkpoint time.Duration
	// Restore is `runsc restore --detach` plus the first `runsc exec ID
	// /bin/true` after it, until that exits.
	Restore time.Duration
	// ImageBytes is the size of the checkpoint's files.
	ImageBytes int64
}

// Where a benchmark's sandbox holds its dirty memory (DirtyMemoryScript).
const (
	// DirtyHeap is a process's anonymous memory, as a program's heap is.
	DirtyHeap = "heap"
	// DirtyTmpfs is a file in a memory file system (/dev/shm).
	DirtyTmpfs = "tmpfs"
)

// DirtyMemoryScript is a /bin/sh script (busybox's will do) that fills
// mb MiB of a sandbox's memory with random data and returns once it is
// filled; the memory stays held after the script returns, and the file
// path+".ready" then exists. kind is DirtyHeap (the one block buffer of a
// dd that waits forever to write it into a pipe no one reads) or
// DirtyTmpfs (the file path, which should be on /dev/shm).
//
// The kinds restore differently: gVisor keeps a process's anonymous
// memory in huge pages when the host allows it for shmem (see
// Config.HostSettings) and a tmpfs file's always in 4 KiB pages, which
// take ~2x longer to load back (docs/benchmarks.md).
func DirtyMemoryScript(kind string, mb int, path string) (string, error) {
	dir := filepath.Dir(path)
	switch kind {
	case DirtyHeap:
		return fmt.Sprintf(`mkdir -p %[1]q && rm -f %[2]q.ready && `+
			`(dd if=/dev/urandom bs=%[3]dM count=1 iflag=fullblock 2>/dev/null | { head -c 1 >/dev/null; touch %[2]q.ready; exec sleep 2147483647; }) </dev/null >/dev/null 2>&1 & `+
			`while [ ! -e %[2]q.ready ]; do sleep 1; done`, dir, path, mb), nil
	case DirtyTmpfs:
		// dd, not head -c NM: busybox's head may not take a size suffix.
		return fmt.Sprintf(`mkdir -p %[1]q && dd if=/dev/urandom of=%[2]q bs=1M count=%[3]d 2>/dev/null && touch %[2]q.ready`, dir, path, mb), nil
	}
	return "", fmt.Errorf("dirty memory in %q: want %s or %s", kind, DirtyHeap, DirtyTmpfs)
}

// floorDirtyPath is where the checkpoint floor's sandbox holds its dirty
// memory (DirtyMemoryScript).
const floorDirtyPath = "/dev/shm/den-bench-dirty"

// MeasureCheckpointFloor times n raw runsc checkpoints and restores of a
// busybox sandbox on rootfsDir (read-only) holding dirtyMB MiB of random
// data in memory of the given kind (DirtyMemoryScript): the floor den's
// Suspend and Resume are compared to. Each iteration starts a new sandbox
// (untimed), checkpoints it, deletes it (untimed) and restores it under
// the same ID. background adds `runsc restore --background` (image pages
// load while the sandbox already runs).
func MeasureCheckpointFloor(ctx context.Context, runscPath, rootfsDir, platform, kind string, dirtyMB, n int, background bool) ([]CheckpointTiming, error) {
	fill, err := DirtyMemoryScript(kind, dirtyMB, floorDirtyPath)
	if err != nil {
		return nil, fmt.Errorf("measure checkpoint floor: %w", err)
	}
	dir, err := os.MkdirTemp("", "den-runsc-ckpt-floor-")
	if err != nil {
		return nil, fmt.Errorf("measure checkpoint floor: %w", err)
	}
	defer os.RemoveAll(dir)
	script := fill + " && exec sleep 1000000"
	if err := writeFloorBundleArgs(dir, rootfsDir, []string{"/bin/sh", "-c", script}); err != nil {
		return nil, fmt.Errorf("measure checkpoint floor: %w", err)
	}
	r := runsc{path: runscPath, root: filepath.Join(dir, "root")}
	defer r.unmountNullNetNS() // before the RemoveAll above, which it would fail
	var out []CheckpointTiming
	for i := range n {
		ct, err := checkpointFloorOnce(ctx, r, dir, platform, fmt.Sprintf("ckpt-floor-%d-%d", os.Getpid(), i), background)
		if err != nil {
			return out, fmt.Errorf("measure checkpoint floor: %w", err)
		}
		out = append(out, ct)
	}
	return out, nil
}

// checkpointFloorOnce is one timed checkpoint and restore.
func checkpointFloorOnce(ctx context.Context, r runsc, bundle, platform, id string, background bool) (CheckpointTiming, error) {
	var ct CheckpointTiming
	flags := []string{"--platform=" + platform, "--network=none", "--host-settings=" + HostSettingsAdjust}
	logPath := filepath.Join(bundle, "runsc.log")
	image := filepath.Join(bundle, "image-"+id)
	defer os.RemoveAll(image)
	defer r.deleteForce(context.WithoutCancel(ctx), id) //nolint:errcheck // best effort; the temp root is removed after
	if err := r.detached(ctx, logPath, append(flags, "run", "--detach", "--bundle", bundle, id)...); err != nil {
		return ct, err
	}
	for {
		if _, err := r.output(ctx, "exec", id, "/bin/test", "-e", floorDirtyPath+".ready"); err == nil {
			break
		}
		if err := ctx.Err(); err != nil {
			return ct, err
		}
		time.Sleep(20 * time.Millisecond) // polling the sandbox; the deadline is ctx's
	}
	begin := time.Now()
	if _, err := r.output(ctx, "checkpoint", "--image-path="+image, id); err != nil {
		return ct, err
	}
	ct.Checkpoint = time.Since(begin)
	if err := r.deleteForce(ctx, id); err != nil {
		return ct, err
	}
	args := append(flags, "restore", "--image-path="+image, "--detach", "--bundle", bundle)
	if background {
		args = append(args, "--background")
	}
	begin = time.Now()
	if err := r.detached(ctx, logPath, append(args, id)...); err != nil {
		return ct, err
	}
	if _, err := r.output(ctx, "exec", id, "/bin/true"); err != nil {
		return ct, err
	}
	ct.Restore = time.Since(begin)
	entries, _ := os.ReadDir(image)
	for _, e := range entries {
		if info, err := e.Info(); err == nil {
			ct.ImageBytes += info.Size()
		}
	}
	return ct, nil
}
