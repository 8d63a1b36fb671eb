package gvisor

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/errdefs"
)

// Filesystem export (driver.FilesystemExporter).
//
// A sandbox's root filesystem writes live in gVisor's rootfs overlay, a
// tmpfs inside the sentry (see doc.go). `runsc tar rootfs-upper` has the
// sentry serialise that upper layer as a tar archive in overlayfs format
// (whiteouts are 0/0 character devices, opaque directories carry
// trusted.overlay.opaque, xattrs are PAX SCHILY.xattr records), holding
// the filesystem's tree lock while it walks, so no name is created,
// removed or renamed meanwhile. The host overlay's own upper (mount
// points, the /tmp marker) is a lower layer to the sentry and not in it.
// ExportFilesystem unpacks the archive into the caller's directory as it
// streams, through a pipe: nothing is staged on disk twice.

// ExportFilesystem implements driver.FilesystemExporter.
func (d *Driver) ExportFilesystem(ctx context.Context, id string, dir string) error {
	if err := checkID(id); err != nil {
		return err
	}
	st, err := d.exportable(ctx, id)
	if err != nil {
		return err
	}
	if err := checkExportDir(dir); err != nil {
		return fmt.Errorf("export filesystem of sandbox %s: %w", id, err)
	}
	begin := time.Now()
	n, err := d.runsc.tarRootfsUpper(ctx, st.runtimeID(id), func(r io.Reader) error { return unpackUpper(ctx, r, dir) })
	if err != nil {
		return fmt.Errorf("export filesystem of sandbox %s: %w", id, err)
	}
	d.log.Info("sandbox filesystem exported", "sandbox", id, "tar_bytes", n, "took", time.Since(begin))
	return nil
}

// exportable returns the state of sandbox id if its filesystem can be
// exported: NotFound, FailedPrecondition otherwise.
func (d *Driver) exportable(ctx context.Context, id string) (sandboxState, error) {
	st, err := readState(d.paths(id))
	if err != nil {
		return st, fmt.Errorf("export filesystem of sandbox %s: %w", id, err)
	}
	if st.UpperDir != "" {
		return st, errdefs.New(errdefs.FailedPrecondition, "export filesystem of sandbox %s: its root filesystem changes are in its upper dir on the host already", id)
	}
	if st.Phase != "" {
		return st, errdefs.New(errdefs.FailedPrecondition, "export filesystem of sandbox %s: it is %s", id, st.Phase)
	}
	oci, err := d.runsc.state(ctx, st.runtimeID(id))
	if err != nil && !errdefs.IsNotFound(err) {
		return st, fmt.Errorf("export filesystem of sandbox %s: %w", id, err)
	}
	if err != nil || oci.Status != "running" {
		return st, errdefs.New(errdefs.FailedPrecondition, "export filesystem of sandbox %s: not running", id)
	}
	return st, nil
}

// checkExportDir: dir is an absolute path of an empty directory.
func checkExportDir(dir string) error {
	if !filepath.IsAbs(dir) {
		return errdefs.New(errdefs.InvalidArgument, "export dir %q is not an absolute path", dir)
	}
	empty, err := isEmptyDir(dir)
	if err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "export dir")
	}
	if !empty {
		return errdefs.New(errdefs.InvalidArgument, "export dir %s is not empty", dir)
	}
	return nil
}

// tarRootfsUpper runs `runsc tar rootfs-upper` for container cid and
// hands the archive to consume as it is written; it returns the number
// of bytes consume read. runsc prints progress on stdout, so the archive
// goes through a pipe passed as fd 3 and named by --file. When consume
// fails, the pipe is closed and runsc, whose writes then fail, exits.
func (r runsc) tarRootfsUpper(ctx context.Context, cid string, consume func(io.Reader) error) (int64, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("runsc tar: %w", err)
	}
	defer pr.Close()
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, r.path, r.args("tar", "rootfs-upper", "--file", "/proc/self/fd/3", cid)...)
	cmd.ExtraFiles = []*os.File{pw}
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	err = cmd.Start()
	pw.Close() // runsc and the sentry hold the write end now
	if err != nil {
		return 0, fmt.Errorf("runsc tar: %w", err)
	}
	cr := &countingReader{r: pr}
	cerr := consume(cr)
	if cerr == nil {
		// A complete archive is followed by nothing; drain to EOF so
		// runsc is never blocked on a full pipe.
		_, cerr = io.Copy(io.Discard, cr)
	}
	pr.Close()
	werr := cmd.Wait()
	switch {
	case cerr != nil && werr != nil:
		// Either may be the cause: a bad entry makes runsc fail on the
		// closed pipe, a failed runsc cuts the archive short.
		return cr.n, fmt.Errorf("%w (runsc tar: %v: %s)", cerr, werr, strings.TrimSpace(stderr.String()))
	case werr != nil:
		return cr.n, fmt.Errorf("runsc tar: %w: %s", werr, strings.TrimSpace(stderr.String()))
	}
	return cr.n, cerr
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// paxXattrPrefix marks xattrs among a tar header's PAX records.
const paxXattrPrefix = "SCHILY.xattr."

// upperUnpacker writes an overlayfs-format archive into root. Every
// entry's parent must be a directory the archive itself created earlier
// (the sentry writes a directory before its children), and a hard link
// must name a non-directory entry written earlier, so no entry can reach
// outside root through a symlink or a "..".
type upperUnpacker struct {
	root string
	dirs map[string]bool // directories created, by cleaned name ("." is root)
	// files are the non-directories created, for hard links.
	files map[string]bool
	// dirTimes are set last: creating children changes a directory's mtime.
	dirTimes []dirTime
}

type dirTime struct {
	name  string
	mtime time.Time
}

// unpackUpper unpacks the overlayfs-format archive r into the empty
// directory root.
func unpackUpper(ctx context.Context, r io.Reader, root string) error {
	u := &upperUnpacker{root: root, dirs: map[string]bool{".": true}, files: map[string]bool{}}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read rootfs archive: %w", err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return fmt.Errorf("unpack rootfs archive entry %q: %w", hdr.Name, err)
		}
	}
	return u.finish()
}

// cleanEntryName turns an archive name ("./etc/passwd", "./usr/") into a
// slash-separated name relative to the root ("." for the root itself).
func cleanEntryName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", errdefs.New(errdefs.InvalidArgument, "absolute name")
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", errdefs.New(errdefs.InvalidArgument, "name leaves the root")
		}
	}
	return path.Clean(name), nil
}

func (u *upperUnpacker) abs(name string) string {
	return filepath.Join(u.root, filepath.FromSlash(name))
}

func (u *upperUnpacker) entry(hdr *tar.Header, body io.Reader) error {
	name, err := cleanEntryName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." {
		return nil // the root's own attributes are the image's to keep
	}
	if !u.dirs[path.Dir(name)] {
		return errdefs.New(errdefs.InvalidArgument, "parent is not a directory of the archive")
	}
	if u.dirs[name] || u.files[name] {
		return errdefs.New(errdefs.InvalidArgument, "name appears twice")
	}
	p := u.abs(name)
	switch hdr.Typeflag {
	case tar.TypeDir:
		err = u.mkdir(name, p, hdr)
	case tar.TypeReg:
		err = writeUpperFile(p, body)
	case tar.TypeSymlink:
		err = os.Symlink(hdr.Linkname, p)
	case tar.TypeLink:
		return u.link(name, p, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		err = mknodEntry(p, hdr)
	default:
		return errdefs.New(errdefs.InvalidArgument, "unsupported entry type %q", hdr.Typeflag)
	}
	if err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeDir {
		u.files[name] = true
	}
	return setUpperMeta(p, hdr)
}

func (u *upperUnpacker) mkdir(name, p string, hdr *tar.Header) error {
	if err := os.Mkdir(p, 0o700); err != nil {
		return err
	}
	u.dirs[name] = true
	u.dirTimes = append(u.dirTimes, dirTime{name: name, mtime: hdr.ModTime})
	return nil
}

func (u *upperUnpacker) link(name, p, target string) error {
	t, err := cleanEntryName(target)
	if err != nil || !u.files[t] {
		return errdefs.New(errdefs.InvalidArgument, "hard link to %q, which is no earlier file of the archive", target)
	}
	if err := os.Link(u.abs(t), p); err != nil {
		return err
	}
	u.files[name] = true
	return nil
}

// finish sets the directories' mtimes, deepest first.
func (u *upperUnpacker) finish() error {
	for _, d := range slices.Backward(u.dirTimes) {
		if err := setUpperTimes(u.abs(d.name), d.mtime); err != nil {
			return fmt.Errorf("unpack rootfs archive entry %q: %w", d.name, err)
		}
	}
	return nil
}

func writeUpperFile(p string, body io.Reader) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func mknodEntry(p string, hdr *tar.Header) error {
	mode := uint32(unix.S_IFIFO)
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode = unix.S_IFCHR
	case tar.TypeBlock:
		mode = unix.S_IFBLK
	}
	return unix.Mknod(p, mode|0o600, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))))
}

// setUpperMeta gives p the owner, mode, xattrs and (for non-directories)
// mtime of hdr. POSIX ACLs are left out: the archive holds them in the
// sentry's own encoding.
func setUpperMeta(p string, hdr *tar.Header) error {
	if err := os.Lchown(p, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	// Chown clears setuid/setgid bits; the mode goes after it.
	if hdr.Typeflag != tar.TypeSymlink {
		if err := unix.Chmod(p, uint32(hdr.Mode)&0o7777); err != nil {
			return err
		}
	}
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattrPrefix)
		if !ok || strings.HasPrefix(name, "system.posix_acl_") {
			continue
		}
		if err := unix.Lsetxattr(p, name, []byte(v), 0); err != nil {
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	if hdr.Typeflag == tar.TypeDir {
		return nil
	}
	return setUpperTimes(p, hdr.ModTime)
}

func setUpperTimes(p string, mtime time.Time) error {
	ts := unix.NsecToTimespec(mtime.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}
