package guest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
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

// checkpointFile is gVisor's /proc/gvisor/checkpoint. A read from a file
// opened before a checkpoint blocks until that checkpoint is done, then
// returns "resume" (the sandbox ran on), "restore" (this is a restored
// copy) or "error" (the checkpoint failed, and the sandbox ran on): in
// each case the agent can listen again. A variable for tests; an agent
// started with CheckpointFileEnv set uses that path instead (tests of
// den's driver use a missing one to act as an older agent).
var checkpointFile = "/proc/gvisor/checkpoint"

// CheckpointFileEnv, in the agent's environment, names the file it waits
// on instead of checkpointFile.
const CheckpointFileEnv = "DEN_GUEST_CHECKPOINT_FILE"

// answerArmed is the agent's answer to a save request when it will listen
// again by itself once the checkpoint is done (watchCheckpoint): runsc
// then need not run the hook after a restore, which costs a process start
// (~20 ms) on every resume, clone and fork. An older agent answers "ok".
const answerArmed = "ok armed"

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
		if watchCheckpoint(srv, log) {
			_, _ = c.Write([]byte(answerArmed + "\n"))
			return
		}
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

// watchCheckpoint opens checkpointFile and, in the background, has srv
// listen again once the next checkpoint is done. It reports whether it
// could (not outside gVisor, nor in a gVisor without the file).
func watchCheckpoint(srv *Server, log *slog.Logger) bool {
	path := checkpointFile
	if p := os.Getenv(CheckpointFileEnv); p != "" {
		path = p
	}
	f, err := os.Open(path)
	if err != nil {
		log.Debug("no checkpoint file; the restore hook will resume the agent", "err", err)
		return false
	}
	go func() {
		defer f.Close()
		buf := make([]byte, 32)
		n, err := f.Read(buf)
		if err != nil {
			log.Warn("wait for the checkpoint", "err", err)
			return
		}
		phase := strings.TrimSpace(string(buf[:n]))
		if err := srv.Resume(); err != nil {
			log.Warn("listen again after a checkpoint", "result", phase, "err", err)
			return
		}
		log.Info("listening again after a checkpoint", "result", phase)
	}()
	return true
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

// HookArmedLine is what `den-guest checkpoint-hook save` prints when the
// agent will listen again by itself after the checkpoint (answerArmed):
// den then takes the checkpoint without setting the hook in the kernel.
const HookArmedLine = "den-guest: armed"

// RunHook asks the agent of this sandbox to prepare for phase mode (one of
// the Hook* modes) and waits for its answer. armed reports that the agent
// will listen again by itself once a checkpoint after a save is done.
func RunHook(ctx context.Context, mode string) (armed bool, err error) {
	switch mode {
	case HookSave, HookRestore, HookResume:
	default:
		return false, fmt.Errorf("checkpoint hook: unknown phase %q (want %s, %s or %s)", mode, HookSave, HookRestore, HookResume)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", controlSocket)
	if err != nil {
		return false, fmt.Errorf("checkpoint hook: dial agent: %w", err)
	}
	defer c.Close()
	deadline := time.Now().Add(controlTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = c.SetDeadline(deadline)
	if _, err := c.Write([]byte(mode + "\n")); err != nil {
		return false, fmt.Errorf("checkpoint hook: %w", err)
	}
	answer, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return false, fmt.Errorf("checkpoint hook: read answer: %w", err)
	}
	switch answer = strings.TrimSpace(answer); answer {
	case "ok":
		return false, nil
	case answerArmed:
		return true, nil
	}
	return false, errors.New("checkpoint hook: agent: " + strings.TrimPrefix(answer, "error: "))
}
