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

// overlay is a sandbox's host overlayfs mount.
type overlay struct {
	lower []string // read-only directories, topmost first
	upper string
	work  string
	// plainUpper turns off the overlayfs features that record changes in
	// a form only overlayfs reads back (redirect and metacopy xattrs, the
	// inode index), so that upper is a plain layer diff: copied-up files
	// hold their data, renamed lower directories are copies plus
	// whiteouts.
	plainUpper bool
}

// options are the mount options of o.
func (o overlay) options() (string, error) {
	if len(o.lower) == 0 {
		return "", errdefs.New(errdefs.InvalidArgument, "image has no layers")
	}
	for _, l := range o.lower {
		if !filepath.IsAbs(l) || strings.ContainsAny(l, ":,\\") {
			return "", errdefs.New(errdefs.InvalidArgument, "image layer %q: want an absolute path without ':', ',' or '\\'", l)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(o.lower, ":"), o.upper, o.work)
	if o.plainUpper {
		opts += ",redirect_dir=off,metacopy=off,index=off"
	}
	if len(opts) >= unix.Getpagesize() {
		return "", errdefs.New(errdefs.InvalidArgument, "image has too many layers for one overlay mount (%d bytes of options)", len(opts))
	}
	return opts, nil
}

// mount mounts o at p.rootfs().
func (o overlay) mount(p paths) error {
	opts, err := o.options()
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
