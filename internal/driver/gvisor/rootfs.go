package gvisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/errdefs"
)

// tmpMarker keeps /tmp non-empty in the sandbox's root view, so gVisor does
// not mount its internal (memory-backed, unlimited) tmpfs over it and /tmp
// stays under the disk quota of the root overlay.
const tmpMarker = ".den-tmp-on-rootfs"

// prepareUpper creates the host overlay upper and work directories, with
// /tmp (and its marker) pre-created in the upper layer.
func prepareUpper(p paths) error {
	for _, d := range []string{p.upper(), p.work(), p.rootfs()} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("prepare rootfs: %w", err)
		}
	}
	tmp := filepath.Join(p.upper(), "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return fmt.Errorf("prepare rootfs /tmp: %w", err)
	}
	// Mkdir applies the umask; the sticky, world-writable mode needs Chmod.
	if err := os.Chmod(tmp, 0o1777); err != nil {
		return fmt.Errorf("prepare rootfs /tmp: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, tmpMarker), nil, 0o444); err != nil {
		return fmt.Errorf("prepare rootfs /tmp: %w", err)
	}
	return nil
}

// overlayOptions are the mount options combining layers (topmost first,
// read-only) with the sandbox's upper directory.
func overlayOptions(layers []string, p paths) (string, error) {
	if len(layers) == 0 {
		return "", errdefs.New(errdefs.InvalidArgument, "image has no layers")
	}
	for _, l := range layers {
		if !filepath.IsAbs(l) || strings.ContainsAny(l, ":,\\") {
			return "", errdefs.New(errdefs.InvalidArgument, "image layer %q: want an absolute path without ':', ',' or '\\'", l)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(layers, ":"), p.upper(), p.work())
	if len(opts) >= unix.Getpagesize() {
		return "", errdefs.New(errdefs.InvalidArgument, "image has too many layers for one overlay mount (%d bytes of options)", len(opts))
	}
	return opts, nil
}

// mountRootfs mounts the sandbox's host overlay at p.rootfs().
func mountRootfs(layers []string, p paths) error {
	opts, err := overlayOptions(layers, p)
	if err != nil {
		return err
	}
	if err := unix.Mount("overlay", p.rootfs(), "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount rootfs overlay: %w", err)
	}
	return nil
}

// unmountRootfs unmounts p.rootfs(); not mounted or missing is fine.
func unmountRootfs(p paths) error {
	err := unix.Unmount(p.rootfs(), 0)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(p.rootfs(), unix.MNT_DETACH)
	}
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmount rootfs: %w", err)
}

// isMountPoint reports whether path is mounted on (a different device from
// its parent). A missing path is not a mount point.
func isMountPoint(path string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("stat %s: %w", path, err)
	}
	if err := unix.Lstat(filepath.Dir(path), &parent); err != nil {
		return false, fmt.Errorf("stat %s: %w", filepath.Dir(path), err)
	}
	return st.Dev != parent.Dev, nil
}
