package build

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/errdefs"
)

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// checkChecksum validates ADD --checksum: one http(s) source only.
func checkChecksum(add bool, sources []string, checksum string) error {
	switch {
	case checksum == "":
		return nil
	case !add:
		return invalid("checksum can't be specified for COPY")
	case len(sources) != 1:
		return invalid("checksum can't be specified for multiple sources")
	case !isURL(sources[0]):
		return invalid("checksum can't be specified for non-HTTP sources")
	case !strings.HasPrefix(checksum, "sha256:"):
		return invalid("unsupported checksum %q: want sha256:<hex>", checksum)
	}
	return nil
}

// download fetches an ADD URL into the build's scratch directory. The file
// is named after the URL's last path element and gets mode 0600 and the
// Last-Modified time, as Docker does; it is not unpacked.
func (r *run) download(ctx context.Context, rawURL, checksum string) (copyItem, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return copyItem{}, invalid("invalid URL %q: %v", rawURL, err)
	}
	name := path.Base(u.Path)
	if name == "." || name == "/" || name == "" {
		name = "__unnamed__"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return copyItem{}, invalid("invalid URL %q: %v", rawURL, err)
	}
	resp, err := r.b.http.Do(req)
	if err != nil {
		return copyItem{}, errdefs.Wrap(errdefs.Unavailable, err, "download %s", rawURL)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return copyItem{}, invalid("download %s: %s", rawURL, resp.Status)
	}
	f, err := os.CreateTemp(r.dir, "download-*")
	if err != nil {
		return copyItem{}, fmt.Errorf("download %s: %w", rawURL, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), resp.Body); err != nil {
		return copyItem{}, errdefs.Wrap(errdefs.Unavailable, err, "download %s", rawURL)
	}
	sum := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if checksum != "" && checksum != sum {
		return copyItem{}, invalid("digest mismatch for %s: expected %s, got %s", rawURL, checksum, sum)
	}
	mtime, _ := http.ParseTime(resp.Header.Get("Last-Modified"))
	return copyItem{kind: itemData, name: name, file: f.Name(), hash: rawURL + "@" + sum,
		meta: meta{mode: 0o600, mtime: mtime}}, nil
}

// errXZ marks an xz-compressed file: Docker unpacks those, den has no xz
// decoder and copies them as they are.
var errXZ = errors.New("xz compression is not supported")

// isArchive reports whether the file at host is a tar archive ADD unpacks:
// plain or compressed with gzip, bzip2 or zstd.
func (r *run) isArchive(host, src string) (bool, error) {
	rc, err := openArchive(host)
	if errors.Is(err, errXZ) {
		r.log.note("NOTE: %s is xz-compressed: den cannot unpack it and copies it as a file", src)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if rc == nil {
		return false, nil
	}
	return true, rc.Close()
}

// openArchive returns the tar stream of the file at p when it is an
// archive, nil when it is not.
func openArchive(p string) (io.ReadCloser, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	rc, err := decompress(f)
	if err != nil || rc == nil {
		f.Close()
		return nil, err
	}
	if _, err := tar.NewReader(rc).Next(); err != nil {
		rc.Close()
		return nil, nil
	}
	rc.Close()
	if f, err = os.Open(p); err != nil {
		return nil, err
	}
	if rc, err = decompress(f); err != nil || rc == nil {
		f.Close()
		return nil, err
	}
	return rc, nil
}

var (
	magicGzip  = []byte{0x1f, 0x8b}
	magicBzip2 = []byte("BZh")
	magicXZ    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// decompress returns f's content, decompressed by its magic number; the
// returned reader closes f. A file that is compressed but corrupt is no
// archive (nil).
func decompress(f *os.File) (io.ReadCloser, error) {
	br := bufio.NewReader(f)
	head, _ := br.Peek(6)
	closeBoth := func(r io.Reader, c func()) io.ReadCloser {
		return readCloser{Reader: r, close: func() error { c(); return f.Close() }}
	}
	switch {
	case bytes.HasPrefix(head, magicGzip):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil
		}
		return closeBoth(zr, func() { zr.Close() }), nil
	case bytes.HasPrefix(head, magicBzip2):
		return closeBoth(bzip2.NewReader(br), func() {}), nil
	case bytes.HasPrefix(head, magicZstd):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, nil
		}
		return closeBoth(zr, zr.Close), nil
	case bytes.HasPrefix(head, magicXZ):
		return nil, errXZ
	}
	return closeBoth(br, func() {}), nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

// extractArchive unpacks the tar archive at host into the directory dest.
// Entries keep their owner (unless --chown), mode and times; names that
// leave the destination are refused.
func (w *layerWriter) extractArchive(ctx context.Context, host, dest string) error {
	rc, err := openArchive(host)
	if err != nil {
		return err
	}
	if rc == nil {
		return fmt.Errorf("%s is no longer an archive", host)
	}
	defer rc.Close()
	root, err := w.mkdirAll(dest, w.parentOwner())
	if err != nil {
		return err
	}
	tr := tar.NewReader(rc)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return invalid("read archive: %v", err)
		}
		if err := w.extractEntry(root, hdr, tr); err != nil {
			return fmt.Errorf("unpack %q: %w", hdr.Name, err)
		}
	}
}

func (w *layerWriter) extractEntry(root string, hdr *tar.Header, r io.Reader) error {
	name, err := archiveName(hdr.Name)
	if err != nil || name == "" {
		return err
	}
	dst := path.Join(root, name)
	m := meta{mode: uint32(hdr.Mode & 0o7777), uid: hdr.Uid, gid: hdr.Gid, mtime: hdr.ModTime}
	if w.chown != nil {
		m.uid, m.gid = w.chown.uid, w.chown.gid
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		_, err = w.dirAt(dst, m)
	case tar.TypeReg, tar.TypeRegA:
		_, err = w.writeFile(dst, r, m)
	case tar.TypeSymlink:
		err = w.symlink(dst, hdr.Linkname, m)
	case tar.TypeLink:
		err = w.extractLink(root, dst, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		typ := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		err = w.mknod(dst, typ, unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)), m)
	}
	return err
}

// extractLink makes a hard link to an earlier entry of the archive.
func (w *layerWriter) extractLink(root, dst, target string) error {
	name, err := archiveName(target)
	if err != nil {
		return err
	}
	resolved, err := w.view.resolve(path.Join(root, name), false)
	if err != nil {
		return err
	}
	h := w.host(resolved)
	if _, err := os.Lstat(h); err != nil {
		return invalid("hard link target %q is not in the archive", target)
	}
	return w.link(dst, h)
}

// archiveName cleans a tar entry name; names with ".." are refused.
func archiveName(name string) (string, error) {
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", invalid("path traversal: %q leaves the destination", name)
		}
	}
	return cleanRel(name), nil
}
