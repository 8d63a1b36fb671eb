package qemu

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/ckptdir"
	"github.com/denhq/den/internal/errdefs"
)

// A checkpoint directory holds:
//
//	state               QEMU's migration stream: CPUs and devices, and
//	                    the RAM when the manifest says ram_in_stream
//	memory              the guest's RAM as a file (absent with ram_in_stream)
//	disk.qcow2          the disk overlay; its backing file is the cached
//	                    base disk the manifest names
//	den-checkpoint.json the manifest, written last: a directory without it
//	                    holds no complete checkpoint
const (
	manifestName = ckptdir.ManifestName
	streamName   = "state"
	diskName     = "disk.qcow2"
)

// manifestFormat names the manifest layout.
const manifestFormat = "den-qemu-checkpoint/1"

// manifest describes a checkpoint: what a VM restored from it must match
// (QEMU restores a stream only into the same machine: RAM size, vCPUs,
// accelerator) and the sizes of its files (a cheap check against
// truncation; the caller checksums the files).
type manifest struct {
	ckptdir.Header
	SandboxID string `json:"sandbox_id"`
	Accel     string `json:"accel"`
	// Kernel is the guest kernel version the VM booted; a restore starts
	// QEMU with the same (the running kernel is in the saved RAM).
	Kernel string `json:"kernel"`
	// BaseDisk is the cached root disk disk.qcow2 stands on; it must
	// still exist where a checkpoint is restored.
	BaseDisk string `json:"base_disk"`
	// MemoryMB and DiskMB are the sandbox's (the VM has vmOverheadMB more
	// RAM); CPUs its vCPU count.
	MemoryMB int64 `json:"memory_mb"`
	DiskMB   int64 `json:"disk_mb"`
	CPUs     int   `json:"cpus"`
	// RAMInStream says the stream carries the RAM and there is no memory
	// file: the checkpoint of a VM whose RAM was a private mapping (a
	// clone's), which x-ignore-shared does not skip.
	RAMInStream bool `json:"ram_in_stream,omitempty"`
	// Network says the VM had a NIC (on its sandbox network's tap): the
	// stream holds the NIC's state, so a restored VM has one too.
	// Checkpoints written before it was recorded are of VMs without.
	Network bool `json:"network,omitempty"`
}

// files are the checkpoint's files besides the manifest.
func (m manifest) files() []string {
	if m.RAMInStream {
		return []string{streamName, diskName}
	}
	return []string{streamName, memoryName, diskName}
}

// writeManifest records the files of m in dir and writes the manifest.
func writeManifest(dir string, m manifest) error {
	return ckptdir.Write(dir, manifestFormat, m.files(), &m)
}

// readManifest reads and checks the manifest in dir: InvalidArgument when
// dir holds no complete checkpoint.
func readManifest(dir string) (manifest, error) {
	var m manifest
	err := ckptdir.Read(dir, manifestFormat, "QEMU", &m, func() []string { return m.files() }) // after decoding
	return m, err
}

// fits checks that a VM of spec on d can be restored from m:
// InvalidArgument, or FailedPrecondition when the base disk is gone.
func (m manifest) fits(d *Driver, spec driver.Spec) error {
	switch {
	case m.Accel != d.cfg.Accel:
		return errdefs.New(errdefs.InvalidArgument, "the checkpoint was taken under %s, this driver runs %s", m.Accel, d.cfg.Accel)
	case m.MemoryMB != spec.MemoryMB:
		return errdefs.New(errdefs.InvalidArgument, "the checkpoint's memory is %d MiB, the spec's %d MiB", m.MemoryMB, spec.MemoryMB)
	case m.CPUs != vcpus(spec.CPUs):
		return errdefs.New(errdefs.InvalidArgument, "the checkpoint's VM has %d vCPUs, the spec's %d", m.CPUs, vcpus(spec.CPUs))
	case m.DiskMB != spec.DiskMB || m.BaseDisk != d.baseDisk(spec):
		return errdefs.New(errdefs.InvalidArgument, "the checkpoint's disk stands on other image layers or another disk size than the spec's")
	}
	if _, err := os.Stat(m.BaseDisk); err != nil {
		return errdefs.Wrap(errdefs.FailedPrecondition, err, "the checkpoint's base disk (a cache of the image) is gone")
	}
	return nil
}

// baseDisk is the cached root disk of spec, named as prepareBase names it.
func (d *Driver) baseDisk(spec driver.Spec) string {
	key := shortHash(append([]string{strconv.FormatInt(spec.DiskMB, 10)}, spec.Image.Layers...)...)
	return filepath.Join(d.cfg.StateDir, "disks", key+".ext4")
}

// moveFile renames src to dst, or copies it where they are on different
// file systems (src then stays; moved says which).
func moveFile(src, dst string) (moved bool, err error) {
	err = os.Rename(src, dst)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, unix.EXDEV) {
		return false, err
	}
	return false, copyFile(src, dst)
}

// copyFile copies src into the new file dst: a reflink (FICLONE) where
// the file system shares blocks, else only src's data ranges
// (SEEK_DATA/SEEK_HOLE, copy_file_range), so the holes of a sparse file
// (the untouched RAM of a memory file) stay holes. dst is removed on error.
func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	if unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) == nil {
		return nil
	}
	info, err := in.Stat()
	if err != nil {
		return err
	}
	if err := copyData(in, out, info.Size()); err != nil {
		return fmt.Errorf("copy %s: %w", filepath.Base(src), err)
	}
	return out.Truncate(info.Size())
}

// copyData copies the data ranges of in's first size bytes to the same
// offsets in out.
func copyData(in, out *os.File, size int64) error {
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole follows
		}
		if err != nil {
			return err
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		if err := copyRange(in, out, data, min(hole, size)); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

// copyRange copies bytes [from, to) of in to out, in the kernel where it
// can.
func copyRange(in, out *os.File, from, to int64) error {
	roff, woff := from, from
	for roff < to {
		n, err := unix.CopyFileRange(int(in.Fd()), &roff, int(out.Fd()), &woff, int(min(to-roff, 1<<30)), 0)
		if err != nil {
			if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
				_, err := io.Copy(io.NewOffsetWriter(out, roff), io.NewSectionReader(in, roff, to-roff))
				return err
			}
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF // in shrank under us
		}
	}
	return nil
}
