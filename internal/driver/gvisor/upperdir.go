package gvisor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
)

// A sandbox with a Spec.UpperDir (see doc.go, Caller's upper directory)
// mounts its host overlay with that directory as upperdir and runs runsc
// with --overlay2=none, so every root filesystem change the sandbox makes
// reaches the caller's directory through the gofer and the host kernel's
// overlayfs. Nothing but the sandbox may land there, so the mount points
// runsc needs and the /tmp marker live in an init layer (as Docker's
// "-init" layer), the topmost read-only layer, inside the sandbox directory.

// initLayerDirs are the mount points of the OCI spec (bundle.go) that the
// gofer would otherwise create in the upper directory.
var initLayerDirs = []string{"proc", "dev", "sys", strings.TrimPrefix(guestRunDir, "/")}

// checkUpperDirPath validates the form of spec.UpperDir: it goes into the
// overlay mount options as is.
func checkUpperDirPath(spec driver.Spec) error {
	dir := spec.UpperDir
	if dir == "" {
		return nil
	}
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || strings.ContainsAny(dir, ":,\\") {
		return errdefs.New(errdefs.InvalidArgument, "create sandbox %s: upper dir %q: want a clean absolute path without ':', ',' or '\\'", spec.ID, dir)
	}
	return nil
}

// prepareCallerUpper checks the caller's upper directory, gives it the
// root directory's mode and owner, and creates the work, rootfs and init
// layer directories.
func prepareCallerUpper(spec driver.Spec, p paths) error {
	if err := checkUpperDir(spec.UpperDir, p); err != nil {
		return err
	}
	for _, d := range []string{p.work(), p.rootfs()} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("prepare rootfs: %w", err)
		}
	}
	// The upper root is the sandbox's "/", as upper/ is without an UpperDir.
	if err := os.Chown(spec.UpperDir, 0, 0); err != nil {
		return fmt.Errorf("prepare upper dir: %w", err)
	}
	if err := os.Chmod(spec.UpperDir, 0o755); err != nil {
		return fmt.Errorf("prepare upper dir: %w", err)
	}
	return writeInitLayer(spec.Image.Layers, p)
}

// checkUpperDir checks that dir is an empty directory on the filesystem of
// the sandbox directory (overlayfs wants the work dir beside the upper).
func checkUpperDir(dir string, p paths) error {
	var st, own unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "upper dir %s", dir)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return errdefs.New(errdefs.InvalidArgument, "upper dir %s is not a directory", dir)
	}
	if err := unix.Stat(p.dir, &own); err != nil {
		return fmt.Errorf("stat sandbox dir: %w", err)
	}
	if st.Dev != own.Dev {
		return errdefs.New(errdefs.InvalidArgument, "upper dir %s is not on the filesystem of the driver's state dir %s", dir, filepath.Dir(filepath.Dir(p.dir)))
	}
	empty, err := isEmptyDir(dir)
	if err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "upper dir %s", dir)
	}
	if !empty {
		return errdefs.New(errdefs.InvalidArgument, "upper dir %s is not empty", dir)
	}
	return nil
}

func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}

// writeInitLayer fills p.initLayer() with the OCI mount points and /tmp.
func writeInitLayer(layers []string, p paths) error {
	for _, d := range initLayerDirs {
		if err := os.MkdirAll(filepath.Join(p.initLayer(), d), 0o755); err != nil {
			return fmt.Errorf("write init layer: %w", err)
		}
	}
	guest := filepath.Join(p.initLayer(), strings.TrimPrefix(guestBinaryPath, "/"))
	if err := os.WriteFile(guest, nil, 0o755); err != nil {
		return fmt.Errorf("write init layer: %w", err)
	}
	if err := writeInitTmp(layers, p); err != nil {
		return fmt.Errorf("write init layer /tmp: %w", err)
	}
	return nil
}

// writeInitTmp keeps gVisor's internal tmpfs off /tmp, as prepareUpper
// does, so /tmp writes land in the upper dir like any other: when the
// image has a /tmp directory, the init layer gets one with the same mode,
// owner and mtime (it is the one overlayfs shows and copies up) holding
// tmpMarker. An image without /tmp gets an empty one, which gVisor
// mounts its tmpfs on: the gofer would create the mount point in the
// upper dir otherwise. An image whose /tmp is no directory keeps it.
func writeInitTmp(layers []string, p paths) error {
	st, ok, err := imageTmp(layers)
	if err != nil {
		return err
	}
	tmp := filepath.Join(p.initLayer(), "tmp")
	switch {
	case !ok:
		if err := os.Mkdir(tmp, 0o755); err != nil {
			return err
		}
		return os.Chmod(tmp, 0o1777)
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return nil
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, tmpMarker), nil, 0o444); err != nil {
		return err
	}
	return copyDirAttrs(tmp, st)
}

// imageTmp stats /tmp in the image whose layers (topmost first) are
// given; false when it has none (never created, or deleted by a whiteout).
func imageTmp(layers []string) (unix.Stat_t, bool, error) {
	var st unix.Stat_t
	for _, l := range layers {
		err := unix.Lstat(filepath.Join(l, "tmp"), &st)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return st, false, fmt.Errorf("stat %s/tmp: %w", l, err)
		}
		whiteout := st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
		return st, !whiteout, nil
	}
	return st, false, nil
}

// copyDirAttrs gives dir the mode, owner and times of st.
func copyDirAttrs(dir string, st unix.Stat_t) error {
	if err := os.Lchown(dir, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	// Chown clears setuid/setgid bits; the mode goes after it.
	if err := unix.Chmod(dir, st.Mode&0o7777); err != nil {
		return err
	}
	return unix.UtimesNanoAt(unix.AT_FDCWD, dir, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
}
