package image

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// removeTree removes path and everything below it. Mounts below path (a
// debootstrap killed mid-way leaves proc and sys mounted in its target) are
// detached first so the removal never reaches into them.
func removeTree(path string) error {
	mounts, err := mountsUnder(path)
	if err != nil {
		return err
	}
	// Deepest first, so a mount is detached before the one it sits on.
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			return &os.PathError{Op: "unmount", Path: m, Err: err}
		}
	}
	return os.RemoveAll(path)
}

// mountsUnder lists the mount points at or below path.
func mountsUnder(path string) ([]string, error) {
	path, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if mp == path || strings.HasPrefix(mp, path+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// unescapeMountPath undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// overlayLowerDirs lists the lower directories of every overlay mount of
// this mount namespace: the layers running sandboxes (and warm spares and
// build steps) stand on. GC must never delete them, whether or not an image
// still names them.
func overlayLowerDirs() (map[string]bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dirs := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// "... mount-point opts [optional fields] - fstype source super-opts"
		_, post, ok := strings.Cut(sc.Text(), " - ")
		fields := strings.Fields(post)
		if !ok || len(fields) < 3 || fields[0] != "overlay" {
			continue
		}
		for opt := range strings.SplitSeq(fields[2], ",") {
			if lower, ok := strings.CutPrefix(opt, "lowerdir="); ok {
				for d := range strings.SplitSeq(lower, ":") {
					dirs[filepath.Clean(unescapeMountPath(d))] = true
				}
			}
		}
	}
	return dirs, sc.Err()
}
