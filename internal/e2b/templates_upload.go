package e2b

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/denhq/den/internal/errdefs"
)

// uploadLinkTTL is how long an upload link stays valid.
const uploadLinkTTL = time.Hour

// maxUploadEntries bounds the entries of one uploaded archive.
const maxUploadEntries = 1 << 20

// uploadPrefix starts the names of uploads in progress in a files directory.
const uploadPrefix = ".upload-"

// tooLargeError is an upload over a limit: HTTP 413.
type tooLargeError struct{ msg string }

func (e *tooLargeError) Error() string { return e.msg }

// hasFiles reports whether the files of hash were uploaded to template id.
func (t *Templates) hasFiles(id, hash string) bool {
	_, err := os.Stat(filepath.Join(t.filesDir(id), hash))
	return err == nil
}

// uploadURL is a link, valid for uploadLinkTTL, to PUT the files of hash
// of template id to.
func (t *Templates) uploadURL(base, id, hash string) string {
	exp := strconv.FormatInt(t.cfg.Now().Add(uploadLinkTTL).Unix(), 10)
	q := url.Values{"expires": {exp}, "signature": {t.sign(id, hash, exp)}}
	return strings.TrimSuffix(base, "/") + "/templates/" + url.PathEscape(id) + "/files/" + url.PathEscape(hash) + "/upload?" + q.Encode()
}

func (t *Templates) sign(id, hash, exp string) string {
	m := hmac.New(sha256.New, t.signKey)
	fmt.Fprintf(m, "template-files\n%s\n%s\n%s", id, hash, exp)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkSignature verifies an upload link's query.
func (t *Templates) checkSignature(id, hash string, q url.Values) error {
	exp := q.Get("expires")
	if !hmac.Equal([]byte(q.Get("signature")), []byte(t.sign(id, hash, exp))) {
		return errdefs.New(errdefs.PermissionDenied, "the upload link's signature is invalid: get a new link from GET /templates/%s/files/%s", id, hash)
	}
	n, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || t.cfg.Now().Unix() > n {
		return errdefs.New(errdefs.PermissionDenied, "the upload link expired: get a new link from GET /templates/%s/files/%s", id, hash)
	}
	return nil
}

// upload stores the body of an upload link's PUT, a tar archive (plain or
// gzip), as the files of its hash, once unpacked. The link's signature is
// its authentication.
func (t *Templates) upload(r *http.Request) error {
	id, hash := r.PathValue("id"), r.PathValue("hash")
	if err := t.checkSignature(id, hash, r.URL.Query()); err != nil {
		return err
	}
	if !hashPattern.MatchString(hash) {
		return invalid("invalid files hash %q", hash)
	}
	t.mu.Lock()
	_, exists := t.templates[id]
	t.mu.Unlock()
	if !exists {
		return errTemplateNotFound(id)
	}
	limit := t.cfg.MaxUploadBytes
	if r.ContentLength > limit {
		return &tooLargeError{fmt.Sprintf("the upload is %d bytes, more than the limit of %d bytes", r.ContentLength, limit)}
	}
	dir := t.filesDir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create files dir of template %s: %w", id, err)
	}
	tmp, err := os.MkdirTemp(dir, uploadPrefix)
	if err != nil {
		return fmt.Errorf("upload files of template %s: %w", id, err)
	}
	defer os.RemoveAll(tmp) // a no-op after the rename
	body := http.MaxBytesReader(nil, r.Body, limit)
	if err := unpackUpload(r.Context(), body, tmp, 4*limit); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &tooLargeError{fmt.Sprintf("the upload is larger than the limit of %d bytes", limit)}
		}
		return err
	}
	err = os.Rename(tmp, filepath.Join(dir, hash))
	if err != nil && !t.hasFiles(id, hash) {
		return fmt.Errorf("store files %s of template %s: %w", hash, id, err)
	}
	// A concurrent upload of the same hash won: the content is the same.
	t.log.Info("template files uploaded", "template", id, "hash", hash)
	return nil
}

// removePartialUploads removes the uploads a previous process left
// unfinished in template id's files directory.
func (t *Templates) removePartialUploads(id string) {
	entries, err := os.ReadDir(t.filesDir(id))
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), uploadPrefix) {
			if err := os.RemoveAll(filepath.Join(t.filesDir(id), e.Name())); err != nil {
				t.log.Warn("remove unfinished upload", "template", id, "dir", e.Name(), "err", err)
			}
		}
	}
}

// unpackUpload unpacks a tar archive, gzip-compressed or not, into dir,
// writing at most maxBytes of file content. Entries must stay inside dir:
// absolute names, ".." and writes through symbolic links are refused.
// Ownership is not kept; modes are (permission bits only).
func unpackUpload(ctx context.Context, r io.Reader, dir string, maxBytes int64) error {
	br := bufio.NewReader(r)
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return errdefs.Wrap(errdefs.InvalidArgument, err, "the upload is not a valid gzip stream")
		}
		defer zr.Close()
		src = zr
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	u := &unpacker{root: root, left: maxBytes, max: maxBytes}
	tr := tar.NewReader(src)
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return err
			}
			return errdefs.Wrap(errdefs.InvalidArgument, err, "the upload is not a valid tar archive")
		}
		if n >= maxUploadEntries {
			return &tooLargeError{fmt.Sprintf("the upload has more than %d entries", maxUploadEntries)}
		}
		if err := u.entry(hdr, tr); err != nil {
			return err
		}
	}
}

// unpacker writes the entries of an upload under root.
type unpacker struct {
	root      *os.Root
	left, max int64
}

// entry writes one archive entry.
func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	name, err := entryName(hdr.Name)
	if err != nil || name == "." {
		if err == nil && hdr.Typeflag == tar.TypeDir {
			return nil // the archive's root directory
		}
		return errdefs.New(errdefs.InvalidArgument, "archive entry %q: %s", hdr.Name, "the name must be a relative path inside the upload")
	}
	perm := fs.FileMode(hdr.Mode) & fs.ModePerm
	switch hdr.Typeflag {
	case tar.TypeDir:
		return u.dir(name, perm)
	case tar.TypeReg:
		return u.file(name, perm, r)
	case tar.TypeSymlink:
		return u.replace(name, func() error { return u.root.Symlink(hdr.Linkname, name) })
	case tar.TypeLink:
		target, err := entryName(hdr.Linkname)
		if err != nil {
			return errdefs.New(errdefs.InvalidArgument, "archive entry %q: hard link target %q is not inside the upload", hdr.Name, hdr.Linkname)
		}
		if err := u.checkParents(target); err != nil {
			return err
		}
		return u.replace(name, func() error { return u.root.Link(target, name) })
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return errdefs.New(errdefs.InvalidArgument, "archive entry %q: type %q is not supported: upload regular files, directories and links", hdr.Name, string(hdr.Typeflag))
	}
}

// entryName cleans an archive entry name; absolute names and ones that
// leave the archive's root are errors.
func entryName(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") {
		return "", errors.New("absolute")
	}
	clean := path.Clean(name)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", errors.New("escapes")
	}
	return clean, nil
}

func (u *unpacker) dir(name string, perm fs.FileMode) error {
	if err := u.checkParents(name); err != nil {
		return err
	}
	if fi, err := u.root.Lstat(name); err == nil && !fi.IsDir() {
		if err := u.root.Remove(name); err != nil {
			return u.fail(name, err)
		}
	}
	if err := u.root.MkdirAll(name, 0o700); err != nil {
		return u.fail(name, err)
	}
	return u.fail(name, u.root.Chmod(name, perm|0o700))
}

func (u *unpacker) file(name string, perm fs.FileMode, r io.Reader) error {
	return u.replace(name, func() error {
		f, err := u.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		n, err := io.Copy(f, io.LimitReader(r, u.left+1))
		u.left -= n
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if u.left < 0 {
			return &tooLargeError{fmt.Sprintf("the upload unpacks to more than %d bytes", u.max)}
		}
		return u.root.Chmod(name, perm)
	})
}

// replace makes a non-directory entry: it creates the parent directories,
// removes what name was (a later entry of an archive replaces an earlier
// one) and runs create.
func (u *unpacker) replace(name string, create func() error) error {
	if err := u.checkParents(name); err != nil {
		return err
	}
	if parent := path.Dir(name); parent != "." {
		if err := u.root.MkdirAll(parent, 0o755); err != nil {
			return u.fail(name, err)
		}
	}
	if err := u.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return u.fail(name, err)
	}
	return u.fail(name, create())
}

// checkParents refuses a name whose parent directories include a symbolic
// link: writing through one could leave the upload (os.Root would refuse
// it too, less clearly).
func (u *unpacker) checkParents(name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	p := ""
	for part := range strings.SplitSeq(dir, "/") {
		p = path.Join(p, part)
		fi, err := u.root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return u.fail(name, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return errdefs.New(errdefs.InvalidArgument, "archive entry %q: its parent %q is a symbolic link: an upload may not write through links", name, p)
		}
	}
	return nil
}

// fail classifies an error writing name: limits stay 413, anything else
// about the entry is the archive's fault unless it is a plain I/O error.
func (u *unpacker) fail(name string, err error) error {
	var tooBig *tooLargeError
	switch {
	case err == nil, errors.As(err, &tooBig):
		return err
	case errors.Is(err, fs.ErrExist), errors.Is(err, fs.ErrPermission), errors.Is(err, fs.ErrInvalid), errors.Is(err, fs.ErrNotExist):
		return errdefs.Wrap(errdefs.InvalidArgument, err, "archive entry %q", name)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "escapes") {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "archive entry %q leaves the upload", name)
	}
	return fmt.Errorf("unpack archive entry %q: %w", name, err)
}
