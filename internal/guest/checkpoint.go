package guest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Checkpoint hooks. runsc runs a "save/restore binary" inside the sandbox
// before it saves a checkpoint and after it restores or resumes one
// (`runsc checkpoint --save-restore-exec-argv`), with the phase in
// $GVISOR_SAVE_RESTORE_AUTO_EXEC_MODE, and waits for it to exit 0. den's
// is `den-guest checkpoint-hook`: it asks the running agent, over a
// control socket that exists only inside the sandbox, to close its
// listeners and connections (save) or to listen again (restore, resume).
// See Server for why.

// HookModeEnv is the variable in which runsc passes the phase to the
// save/restore binary: one of the Hook* modes.
const HookModeEnv = "GVISOR_SAVE_RESTORE_AUTO_EXEC_MODE"

// Phases of a checkpoint, as runsc names them in HookModeEnv.
const (
	HookSave    = "save"    // before the checkpoint is written
	HookRestore = "restore" // after a restore from a checkpoint
	HookResume  = "resume"  // after a checkpoint that left the sandbox running
)

// controlSocket is the agent's control socket: an abstract unix socket,
// so it lives in the sandbox's network namespace and on no file system
// (nothing on the host can reach it, and it is saved with the sandbox).
// Tests, which run on the host, use a name of their own.
var controlSocket = "@den-guest-control"

// controlTimeout bounds one control request, reading and answering.
const controlTimeout = 30 * time.Second

// ServeControl answers hook requests on the control socket until ctx
// ends: "save" suspends srv, "restore" and "resume" resume it. Only root
// in the sandbox may ask. Requests are handled one at a time. A nil log
// discards.
func ServeControl(ctx context.Context, srv *Server, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("unix", controlSocket)
	if err != nil {
		return fmt.Errorf("listen on control socket: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("control socket: %w", err)
		}
		handleControl(c.(*net.UnixConn), srv, log)
	}
}

// handleControl answers one request on c with "ok" or "error: ...".
func handleControl(c *net.UnixConn, srv *Server, log *slog.Logger) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(controlTimeout))
	reply := func(err error) {
		msg := "ok\n"
		if err != nil {
			msg = "error: " + err.Error() + "\n"
			log.Warn("checkpoint hook failed", "err", err)
		}
		_, _ = c.Write([]byte(msg))
	}
	if err := checkRootPeer(c); err != nil {
		reply(err)
		return
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		reply(fmt.Errorf("read request: %w", err))
		return
	}
	switch mode := strings.TrimSpace(line); mode {
	case HookSave:
		srv.Suspend()
		reply(nil)
	case HookRestore, HookResume:
		err := srv.Resume()
		if err == nil {
			log.Info("listening again after a checkpoint", "phase", mode)
		}
		reply(err)
	default:
		reply(fmt.Errorf("unknown checkpoint phase %q", mode))
	}
}

// checkRootPeer refuses a peer that is not root in the sandbox.
func checkRootPeer(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("peer credentials: %w", cerr)
	}
	if cred.Uid != 0 {
		return fmt.Errorf("peer uid %d is not root", cred.Uid)
	}
	return nil
}

// RunHook asks the agent of this sandbox to prepare for phase mode (one of
// the Hook* modes) and waits for its answer.
func RunHook(ctx context.Context, mode string) error {
	switch mode {
	case HookSave, HookRestore, HookResume:
	default:
		return fmt.Errorf("checkpoint hook: unknown phase %q (want %s, %s or %s)", mode, HookSave, HookRestore, HookResume)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", controlSocket)
	if err != nil {
		return fmt.Errorf("checkpoint hook: dial agent: %w", err)
	}
	defer c.Close()
	deadline := time.Now().Add(controlTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = c.SetDeadline(deadline)
	if _, err := c.Write([]byte(mode + "\n")); err != nil {
		return fmt.Errorf("checkpoint hook: %w", err)
	}
	answer, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("checkpoint hook: read answer: %w", err)
	}
	if answer = strings.TrimSpace(answer); answer != "ok" {
		return errors.New("checkpoint hook: agent: " + strings.TrimPrefix(answer, "error: "))
	}
	return nil
}
