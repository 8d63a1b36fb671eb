package guest

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/denhq/den/api/envd/filesystem"
	"github.com/denhq/den/internal/errdefs"
)

// fsService implements filesystemconnect.FilesystemHandler. Operations run
// with the agent's rights; what they create is owned by the request's user.
type fsService struct {
	a *Agent
}

// Stat describes one path without following a final symlink.
func (s *fsService) Stat(_ context.Context, req *connect.Request[pb.StatRequest]) (*connect.Response[pb.StatResponse], error) {
	acct, err := s.a.account(req.Header(), "")
	if err != nil {
		return nil, toConnect(err)
	}
	path, err := acct.resolvePath(req.Msg.GetPath())
	if err != nil {
		return nil, toConnect(err)
	}
	entry, err := s.a.entry(path)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.StatResponse{Entry: entry}), nil
}

// MakeDir creates a directory and its missing parents.
func (s *fsService) MakeDir(_ context.Context, req *connect.Request[pb.MakeDirRequest]) (*connect.Response[pb.MakeDirResponse], error) {
	acct, err := s.a.account(req.Header(), "")
	if err != nil {
		return nil, toConnect(err)
	}
	path, err := acct.resolvePath(req.Msg.GetPath())
	if err != nil {
		return nil, toConnect(err)
	}
	if _, err := os.Lstat(path); err == nil {
		return nil, toConnect(errdefs.New(errdefs.AlreadyExists, "%s already exists", path))
	}
	if err := acct.mkdirAll(path); err != nil {
		return nil, toConnect(err)
	}
	entry, err := s.a.entry(path)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.MakeDirResponse{Entry: entry}), nil
}

// Move renames source to destination, creating destination's parents.
func (s *fsService) Move(_ context.Context, req *connect.Request[pb.MoveRequest]) (*connect.Response[pb.MoveResponse], error) {
	acct, err := s.a.account(req.Header(), "")
	if err != nil {
		return nil, toConnect(err)
	}
	src, err := acct.resolvePath(req.Msg.GetSource())
	if err != nil {
		return nil, toConnect(err)
	}
	dst, err := acct.resolvePath(req.Msg.GetDestination())
	if err != nil {
		return nil, toConnect(err)
	}
	if _, err := os.Lstat(src); err != nil {
		return nil, toConnect(classifyFS(err, "move"))
	}
	if err := acct.mkdirAll(filepath.Dir(dst)); err != nil {
		return nil, toConnect(err)
	}
	if err := os.Rename(src, dst); err != nil {
		return nil, toConnect(classifyFS(err, "move"))
	}
	entry, err := s.a.entry(dst)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.MoveResponse{Entry: entry}), nil
}

// Remove deletes a path, recursively for a directory.
func (s *fsService) Remove(_ context.Context, req *connect.Request[pb.RemoveRequest]) (*connect.Response[pb.RemoveResponse], error) {
	acct, err := s.a.account(req.Header(), "")
	if err != nil {
		return nil, toConnect(err)
	}
	path, err := acct.resolvePath(req.Msg.GetPath())
	if err != nil {
		return nil, toConnect(err)
	}
	if _, err := os.Lstat(path); err != nil {
		return nil, toConnect(classifyFS(err, "remove"))
	}
	if err := os.RemoveAll(path); err != nil {
		return nil, toConnect(classifyFS(err, "remove"))
	}
	return connect.NewResponse(&pb.RemoveResponse{}), nil
}

// ListDir lists a directory's entries down to depth levels (default 1).
// Symlinks are listed, not followed.
func (s *fsService) ListDir(_ context.Context, req *connect.Request[pb.ListDirRequest]) (*connect.Response[pb.ListDirResponse], error) {
	acct, err := s.a.account(req.Header(), "")
	if err != nil {
		return nil, toConnect(err)
	}
	root, err := acct.resolvePath(req.Msg.GetPath())
	if err != nil {
		return nil, toConnect(err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, toConnect(classifyFS(err, "list"))
	}
	if !fi.IsDir() {
		return nil, toConnect(errdefs.New(errdefs.InvalidArgument, "%s is not a directory", root))
	}
	depth := int(max(req.Msg.GetDepth(), 1))
	resp := &pb.ListDirResponse{}
	if err := s.a.listInto(root, depth, &resp.Entries); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(resp), nil
}

// listInto appends the entries of dir and, while depth > 1, of its
// subdirectories. Entries that vanish while listing are skipped.
func (a *Agent) listInto(dir string, depth int, out *[]*pb.EntryInfo) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return classifyFS(err, "list")
	}
	for _, e := range ents {
		path := filepath.Join(dir, e.Name())
		entry, err := a.entry(path)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		*out = append(*out, entry)
		if depth > 1 && e.IsDir() {
			if err := a.listInto(path, depth-1, out); err != nil && !errdefs.IsNotFound(err) {
				return err
			}
		}
	}
	return nil
}

// entry describes path, not following a final symlink.
func (a *Agent) entry(path string) (*pb.EntryInfo, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, classifyFS(err, "stat")
	}
	e := &pb.EntryInfo{
		Name:         fi.Name(),
		Type:         fileType(fi.Mode()),
		Path:         path,
		Size:         fi.Size(),
		Mode:         uint32(fi.Mode().Perm()),
		Permissions:  fi.Mode().String(),
		ModifiedTime: timestamppb.New(fi.ModTime()),
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.Owner = a.users.userName(st.Uid)
		e.Group = a.users.groupName(st.Gid)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		if target, err := os.Readlink(path); err == nil {
			e.SymlinkTarget = &target
		}
	}
	return e, nil
}

func fileType(m fs.FileMode) pb.FileType {
	switch {
	case m&fs.ModeSymlink != 0:
		return pb.FileType_FILE_TYPE_SYMLINK
	case m.IsDir():
		return pb.FileType_FILE_TYPE_DIRECTORY
	}
	return pb.FileType_FILE_TYPE_FILE
}

// mkdirAll creates dir and its missing parents, owned by acct.
func (acct *account) mkdirAll(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return errdefs.New(errdefs.InvalidArgument, "%s is not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return classifyFS(err, "mkdir %s", dir)
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := acct.mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return classifyFS(err, "mkdir %s", dir)
	}
	return acct.chown(dir)
}

// chown gives path to acct when the agent is root; otherwise what the agent
// creates is already the agent's user's.
func (acct *account) chown(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	if err := os.Lchown(path, int(acct.UID), int(acct.GID)); err != nil {
		return classifyFS(err, "chown %s", path)
	}
	return nil
}
