package den

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"time"

	"connectrpc.com/connect"

	"github.com/denhq/den/api/envd/filesystem"
)

// FileType is the type of a filesystem entry.
type FileType string

// The entry types.
const (
	TypeFile    FileType = "file"
	TypeDir     FileType = "dir"
	TypeSymlink FileType = "symlink"
	TypeOther   FileType = "other"
)

// EntryInfo describes a file or directory in a sandbox.
type EntryInfo struct {
	Name string
	Type FileType
	// Path is absolute.
	Path string
	Size int64
	// Mode holds the permission and type bits.
	Mode fs.FileMode
	// Permissions is the ls-style rendering, e.g. "-rw-r--r--".
	Permissions   string
	Owner, Group  string
	ModTime       time.Time
	SymlinkTarget string
}

func entryFromProto(e *filesystem.EntryInfo) EntryInfo {
	t := TypeOther
	switch e.GetType() {
	case filesystem.FileType_FILE_TYPE_FILE:
		t = TypeFile
	case filesystem.FileType_FILE_TYPE_DIRECTORY:
		t = TypeDir
	case filesystem.FileType_FILE_TYPE_SYMLINK:
		t = TypeSymlink
	}
	info := EntryInfo{
		Name: e.GetName(), Type: t, Path: e.GetPath(), Size: e.GetSize(),
		Mode: fs.FileMode(e.GetMode()), Permissions: e.GetPermissions(),
		Owner: e.GetOwner(), Group: e.GetGroup(), SymlinkTarget: e.GetSymlinkTarget(),
	}
	if e.GetModifiedTime() != nil {
		info.ModTime = e.GetModifiedTime().AsTime()
	}
	return info
}

// filesRequest builds a request to the guest's /files route.
func (s *Sandbox) filesRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	u := s.guestURL() + "/files?" + url.Values{"path": {path}}.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	(&guestDoer{apiKey: s.c.apiKey, user: s.user}).decorate(req)
	return req, nil
}

// ReadFile opens the file at path (relative paths are relative to the
// user's home) for reading. The content is streamed: the caller reads it
// from the returned body and must close it.
func (s *Sandbox) ReadFile(ctx context.Context, path string) (io.ReadCloser, error) {
	req, err := s.filesRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	resp, err := s.c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, contextErr(ctx, err))
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, fmt.Errorf("read %s: %w", path, errorFromResponse(resp))
	}
	return resp.Body, nil
}

// WriteFile creates or replaces the file at path with the content of r,
// creating missing parent directories. The content is streamed as it is
// read from r, never held in memory whole.
func (s *Sandbox) WriteFile(ctx context.Context, path string, r io.Reader) error {
	// Hide any Len or WriterTo of r so the request streams it (chunked)
	// instead of sizing or buffering it.
	req, err := s.filesRequest(ctx, http.MethodPost, path, io.NopCloser(r))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := s.c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, contextErr(ctx, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("write %s: %w", path, errorFromResponse(resp))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	return nil
}

// ListDir lists the directory at path, descending depth levels (0 and 1
// both mean the directory's own entries).
func (s *Sandbox) ListDir(ctx context.Context, path string, depth uint32) ([]EntryInfo, error) {
	if depth == 0 {
		depth = 1
	}
	req := &filesystem.ListDirRequest{Path: path, Depth: depth}
	resp, err := s.fs().ListDir(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, rpcErr(ctx, "list "+path, err)
	}
	out := make([]EntryInfo, 0, len(resp.Msg.GetEntries()))
	for _, e := range resp.Msg.GetEntries() {
		out = append(out, entryFromProto(e))
	}
	return out, nil
}

// Stat describes the entry at path (a symlink itself, not its target).
func (s *Sandbox) Stat(ctx context.Context, path string) (EntryInfo, error) {
	resp, err := s.fs().Stat(ctx, connect.NewRequest(&filesystem.StatRequest{Path: path}))
	if err != nil {
		return EntryInfo{}, rpcErr(ctx, "stat "+path, err)
	}
	return entryFromProto(resp.Msg.GetEntry()), nil
}

// MakeDir creates the directory at path with its missing parents. It fails
// with an already_exists error (IsAlreadyExists) when path exists.
func (s *Sandbox) MakeDir(ctx context.Context, path string) (EntryInfo, error) {
	resp, err := s.fs().MakeDir(ctx, connect.NewRequest(&filesystem.MakeDirRequest{Path: path}))
	if err != nil {
		return EntryInfo{}, rpcErr(ctx, "make directory "+path, err)
	}
	return entryFromProto(resp.Msg.GetEntry()), nil
}

// Remove removes the file or directory (recursively) at path.
func (s *Sandbox) Remove(ctx context.Context, path string) error {
	if _, err := s.fs().Remove(ctx, connect.NewRequest(&filesystem.RemoveRequest{Path: path})); err != nil {
		return rpcErr(ctx, "remove "+path, err)
	}
	return nil
}

// Move renames src to dst and describes the entry at its new place.
func (s *Sandbox) Move(ctx context.Context, src, dst string) (EntryInfo, error) {
	req := &filesystem.MoveRequest{Source: src, Destination: dst}
	resp, err := s.fs().Move(ctx, connect.NewRequest(req))
	if err != nil {
		return EntryInfo{}, rpcErr(ctx, fmt.Sprintf("move %s to %s", src, dst), err)
	}
	return entryFromProto(resp.Msg.GetEntry()), nil
}
