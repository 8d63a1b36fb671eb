package guest

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/denhq/den/internal/errdefs"
)

// uploadedFile is one element of the POST /files response.
type uploadedFile struct {
	Path string `json:"path"`
	Name string `json:"name"`
	Type string `json:"type"`
}

// serveEnvs answers GET /envs with the base environment as a JSON object.
func (a *Agent) serveEnvs(w http.ResponseWriter, _ *http.Request) {
	env := map[string]string{}
	for _, kv := range a.baseEnv() {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			env[k] = v
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(env)
}

// fileAccount returns the account of a /files request. An unknown user is
// Unauthenticated there, as envd answers 401.
func (a *Agent) fileAccount(r *http.Request) (*account, error) {
	acct, err := a.account(r.Header, r.URL.Query().Get("username"))
	if errdefs.Is(err, errdefs.InvalidArgument) {
		return nil, errdefs.Wrap(errdefs.Unauthenticated, err, "")
	}
	return acct, err
}

// serveDownload answers GET /files?path=P: the file's bytes, streamed from
// disk (http.ServeContent, which also serves Range requests).
func (a *Agent) serveDownload(w http.ResponseWriter, r *http.Request) {
	acct, err := a.fileAccount(r)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	path, err := acct.resolvePath(r.URL.Query().Get("path"))
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		writeHTTPError(w, classifyFS(err, "read file"))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		writeHTTPError(w, classifyFS(err, "read file"))
		return
	}
	if !fi.Mode().IsRegular() {
		writeHTTPError(w, errdefs.New(errdefs.InvalidArgument, "%s is not a file", path))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": fi.Name()}))
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}

// serveUpload answers POST /files: a multipart/form-data body whose "file"
// parts are written to the path query parameter or, without one, to each
// part's filename; or a raw body written to the path parameter.
func (a *Agent) serveUpload(w http.ResponseWriter, r *http.Request) {
	acct, err := a.fileAccount(r)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	body := io.Reader(r.Body)
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			writeHTTPError(w, errdefs.Wrap(errdefs.InvalidArgument, err, "gzip body"))
			return
		}
		defer zr.Close()
		body = zr
	}
	var files []uploadedFile
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "multipart/form-data" {
		files, err = a.uploadMultipart(acct, r.URL.Query().Get("path"), multipart.NewReader(body, params["boundary"]))
	} else {
		var f uploadedFile
		f, err = a.uploadOne(acct, r.URL.Query().Get("path"), body)
		files = []uploadedFile{f}
	}
	if err != nil {
		a.log.Warn("upload failed", "err", err)
		writeHTTPError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(files)
}

// uploadMultipart writes each "file" part of mr.
func (a *Agent) uploadMultipart(acct *account, path string, mr *multipart.Reader) ([]uploadedFile, error) {
	files := []uploadedFile{}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "read multipart body")
		}
		if part.FormName() != "file" {
			continue
		}
		target := path
		if target == "" {
			target = rawFilename(part)
		}
		f, err := a.uploadOne(acct, target, part)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, errdefs.New(errdefs.InvalidArgument, "multipart body has no \"file\" part")
	}
	return files, nil
}

// rawFilename is a part's filename parameter as sent. Part.FileName keeps
// only the base name, but envd clients send the full destination path.
func rawFilename(part *multipart.Part) string {
	_, params, err := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
	if err != nil {
		return ""
	}
	return params["filename"]
}

// uploadOne streams r to the file at p, replacing it only once all of r is
// on disk: it writes a temporary file in the same directory, then renames.
func (a *Agent) uploadOne(acct *account, p string, r io.Reader) (uploadedFile, error) {
	path, err := acct.resolvePath(p)
	if err != nil {
		return uploadedFile{}, err
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return uploadedFile{}, errdefs.New(errdefs.InvalidArgument, "%s is a directory", path)
	}
	if err := acct.mkdirAll(filepath.Dir(path)); err != nil {
		return uploadedFile{}, err
	}
	if err := writeAtomic(acct, path, r); err != nil {
		return uploadedFile{}, err
	}
	return uploadedFile{Path: path, Name: filepath.Base(path), Type: "file"}, nil
}

// writeAtomic writes r to a temporary file next to path and renames it over
// path. A new file gets mode 0644; a replaced file keeps its mode.
func writeAtomic(acct *account, path string, r io.Reader) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".upload-*")
	if err != nil {
		return classifyFS(err, "create %s", path)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, bodyReader{r}); err != nil {
		return classifyFS(err, "write %s", path)
	}
	if err := tmp.Close(); err != nil {
		return classifyFS(err, "write %s", path)
	}
	mode := fs.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return classifyFS(err, "chmod %s", path)
	}
	if err := acct.chown(tmp.Name()); err != nil {
		return err
	}
	return classifyFS(os.Rename(tmp.Name(), path), "rename to %s", path)
}

// bodyReader marks errors reading an upload as the client's (InvalidArgument)
// so that they are not mistaken for errors writing to disk.
type bodyReader struct{ r io.Reader }

func (b bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = errdefs.Wrap(errdefs.InvalidArgument, err, "read upload body")
	}
	return n, err
}
