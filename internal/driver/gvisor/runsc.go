package gvisor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/errdefs"
)

// runsc invokes the runsc binary against one --root.
type runsc struct {
	path string
	root string
}

// detached runs a runsc command that starts sandbox processes (run, create,
// start, do). Those processes inherit runsc's stdio, so stdio goes to the
// file at logPath (a pipe would block until the sandbox exits), and runsc
// gets its own session so a signal to den's process group never reaches
// the sandbox. ctx is checked before starting only: killing runsc half-way
// through a start would leave state that only delete -force can clean up,
// and the start itself takes tens of milliseconds.
func (r runsc) detached(ctx context.Context, logPath string, args ...string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open runsc log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(r.path, r.args(args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("runsc %s: %w: %s", args[0], err, logTail(logPath))
	}
	return nil
}

// output runs a runsc command that exits on its own (state, delete, exec)
// and returns its stdout.
func (r runsc) output(ctx context.Context, args ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, r.path, r.args(args...)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String() + " " + string(out))
		return out, fmt.Errorf("runsc %s: %w: %s", args[0], err, msg)
	}
	return out, nil
}

func (r runsc) args(args ...string) []string {
	return append([]string{"--root", r.root}, args...)
}

// ociState is the part of `runsc state` output the driver reads.
type ociState struct {
	Status string `json:"status"`
	Pid    int    `json:"pid"`
}

// exists reports whether runsc has a container named exactly id (runsc's
// own lookup also takes a prefix of an ID: see runtimeIDSuffix). Its
// state file is <root>/<container>_sandbox:<sandbox>.state, and den's
// sandboxes hold one container named like the sandbox.
func (r runsc) exists(id string) bool {
	_, err := os.Stat(filepath.Join(r.root, id+"_sandbox:"+id+".state"))
	return err == nil
}

// state returns the OCI state of container id; NotFound when runsc does
// not know it.
func (r runsc) state(ctx context.Context, id string) (ociState, error) {
	var st ociState
	if !r.exists(id) {
		return st, errdefs.New(errdefs.NotFound, "runsc state %s: container does not exist", id)
	}
	out, err := r.output(ctx, "state", id)
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return st, errdefs.Wrap(errdefs.NotFound, err, "runsc state %s", id)
		}
		return st, err
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return st, fmt.Errorf("decode runsc state: %w", err)
	}
	return st, nil
}

// deleteForce kills and deletes container id. Unknown IDs succeed (and
// never reach runsc, which would delete a container whose ID id prefixes).
func (r runsc) deleteForce(ctx context.Context, id string) error {
	if !r.exists(id) {
		return nil
	}
	_, err := r.output(ctx, "delete", "-force", id)
	return err
}

// logTail is the end of a runsc log file, for error messages.
func logTail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(no runsc log)"
	}
	const max = 600
	s := strings.TrimSpace(string(data))
	if len(s) > max {
		s = "..." + s[len(s)-max:]
	}
	return s
}

// unmountNullNetNS removes the bind mounts of the empty gofer network
// namespace that runsc pins under its root (runsc's own
// specutils.UnmountNullNetNS): the root cannot be removed while mounted.
func (r runsc) unmountNullNetNS() {
	path := filepath.Join(r.root, "null-netns")
	for unix.Unmount(path, unix.MNT_DETACH) == nil {
	}
}
