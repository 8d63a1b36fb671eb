package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	den "github.com/denhq/den/sdk/go"
)

// cpPath is one side of `den cp`: a sandbox path (ID set) or a local path
// ("-" is stdin or stdout).
type cpPath struct {
	id, path string
}

// parseCpPath parses "ID:PATH" as a sandbox path; anything else, including
// a path whose part before ":" contains "/", is local.
func parseCpPath(s string) cpPath {
	id, p, ok := strings.Cut(s, ":")
	if ok && id != "" && !strings.Contains(id, "/") {
		return cpPath{id: id, path: p}
	}
	return cpPath{path: s}
}

func (a *app) cpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy a file between the local machine and a sandbox (one side is ID:PATH; - is stdin/stdout)",
		Args:  argsBetween(2, 2, "SRC and DST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, dst := parseCpPath(args[0]), parseCpPath(args[1])
			switch {
			case src.id != "" && dst.id != "":
				return usagef(cmd, "copying between sandboxes is not supported: copy through the local machine")
			case src.id == "" && dst.id == "":
				return usagef(cmd, "one of SRC and DST must be a sandbox path ID:PATH")
			case (src.id != "" && src.path == "") || (dst.id != "" && dst.path == ""):
				return usagef(cmd, "the sandbox side needs a path: ID:PATH")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if dst.id != "" {
				return upload(cmd, c.Sandbox(dst.id), src.path, dst.path)
			}
			return download(cmd, c.Sandbox(src.id), src.path, dst.path)
		},
	}
}

// errCopyDir is returned for directories.
var errCopyDir = errors.New("copying directories is not supported yet: use tar, e.g. `tar -C DIR -c . | den exec -i ID -- tar -C /dest -x`")

// upload copies the local file (or stdin) to remote in sb. A remote path
// that is an existing directory receives the file under its base name.
func upload(cmd *cobra.Command, sb *den.Sandbox, local, remote string) error {
	ctx := cmd.Context()
	var r io.Reader = cmd.InOrStdin()
	if local != "-" {
		f, err := os.Open(local)
		if err != nil {
			return err
		}
		defer f.Close()
		if fi, err := f.Stat(); err != nil {
			return err
		} else if fi.IsDir() {
			return errCopyDir
		}
		r = f
		if isRemoteDir(ctx, sb, remote) {
			remote = path.Join(remote, filepath.Base(local))
		}
	}
	return sb.WriteFile(ctx, remote, r)
}

// isRemoteDir reports whether p is a directory in sb (false on errors:
// the write then reports them).
func isRemoteDir(ctx context.Context, sb *den.Sandbox, p string) bool {
	info, err := sb.Stat(ctx, p)
	return err == nil && info.Type == den.TypeDir
}

// download copies remote in sb to the local file (or stdout). A local path
// that is an existing directory receives the file under its base name.
func download(cmd *cobra.Command, sb *den.Sandbox, remote, local string) error {
	ctx := cmd.Context()
	if isRemoteDir(ctx, sb, remote) {
		return errCopyDir
	}
	body, err := sb.ReadFile(ctx, remote)
	if err != nil {
		return err
	}
	defer body.Close()
	if local == "-" {
		_, err := io.Copy(cmd.OutOrStdout(), body)
		return err
	}
	if fi, err := os.Stat(local); err == nil && fi.IsDir() {
		// The sandbox's answers are untrusted: even if it calls
		// /tmp/.. a file, the copy must not land beside local.
		name := path.Base(remote)
		if name == ".." || name == "." || name == "/" {
			return fmt.Errorf("cannot name a file in %s after %q: give the local file's name", local, remote)
		}
		local = filepath.Join(local, name)
	}
	return writeLocal(local, body)
}

// writeLocal writes r to a temporary file next to dst and renames it into
// place, so dst is complete or untouched.
func writeLocal(dst string, r io.Reader) error {
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".den-*")
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), dst)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return nil
}
