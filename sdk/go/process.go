package den

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"connectrpc.com/connect"

	"github.com/denhq/den/api/envd/process"
)

// ExecOptions describe a process to start in a sandbox.
type ExecOptions struct {
	// Cmd is the program to run, looked up in the guest's PATH.
	Cmd string
	// Args are the program's arguments, without the program name.
	Args []string
	// Env adds to the environment of the process.
	Env map[string]string
	// Cwd is the working directory; "" means the user's home.
	Cwd string
	// User runs the process as this user; "" means the handle's user (see
	// Sandbox.AsUser), else the guest's default user.
	User string
	// Tag names the process so Connect, Signal and SendInput can find it
	// by Selector{Tag: ...}.
	Tag string
	// Stdin, when not nil, is copied to the process as it is read; at EOF
	// the process's stdin is closed (for a PTY, input simply stops). With
	// nil the process starts without stdin.
	Stdin io.Reader
	// Stdout and Stderr receive the process's output as it arrives; nil
	// discards it. With a PTY all output goes to Stdout.
	Stdout, Stderr io.Writer
	// PTY, when not nil, runs the process on a pseudo-terminal of this size.
	PTY *PTYSize
	// OnStart, when not nil, is called with the process's PID once it has
	// started, before any output is written.
	OnStart func(pid uint32)
}

// PTYSize is the size of a pseudo-terminal in character cells.
type PTYSize struct {
	Cols, Rows uint32
}

// ExitStatus is how a process ended.
type ExitStatus struct {
	// Code is the exit code; -1 when the process was killed by a signal.
	Code int
	// Exited is true when the process exited on its own (not by a signal).
	Exited bool
	// Status is the guest's description, e.g. "exit status 1" or
	// "signal: killed".
	Status string
	// Error is the guest's error text when the process could not run.
	Error string
}

// Selector picks a process of a sandbox by PID or, when PID is 0, by tag.
type Selector struct {
	PID uint32
	Tag string
}

func (s Selector) proto() *process.ProcessSelector {
	if s.PID != 0 || s.Tag == "" {
		return &process.ProcessSelector{Selector: &process.ProcessSelector_Pid{Pid: s.PID}}
	}
	return &process.ProcessSelector{Selector: &process.ProcessSelector_Tag{Tag: s.Tag}}
}

func (s Selector) String() string {
	if s.PID != 0 || s.Tag == "" {
		return fmt.Sprintf("pid %d", s.PID)
	}
	return "tag " + s.Tag
}

// Exec starts a process in the sandbox, streams its output to the writers
// as it arrives, and waits for it to end.
//
// The error is non-nil when the process could not be started, the stream
// broke, an output writer failed, or ctx ended. A process that runs and
// fails is not an error: see ExitStatus. Cancelling ctx stops waiting but
// does NOT kill the remote process; call Signal (with the PID from OnStart
// or a Tag) to stop it, or Connect to re-attach.
//
// Stdin is read on a goroutine. Like os/exec, Exec does not wait for a Read
// of Stdin that blocks after the process ended: that goroutine sends
// nothing more and returns when the Read does.
func (s *Sandbox) Exec(ctx context.Context, opts ExecOptions) (ExitStatus, error) {
	sb := s
	if opts.User != "" && opts.User != s.user {
		sb = s.AsUser(opts.User)
	}
	stream, err := sb.startProc().CallServerStream(ctx, connect.NewRequest(startRequest(opts)))
	if err != nil {
		return ExitStatus{}, rpcErr(ctx, "start process", err)
	}
	ended := false
	defer func() { closeStream(stream, ended) }()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	h := &eventHandler{stdout: opts.Stdout, stderr: opts.Stderr, onStart: func(pid uint32) {
		if opts.OnStart != nil {
			opts.OnStart(pid)
		}
		if opts.Stdin != nil {
			go sb.pumpStdin(ctx, Selector{PID: pid}, opts.Stdin, opts.PTY != nil)
		}
	}}
	for stream.Receive() {
		if done, err := h.handle(stream.Msg().GetEvent()); done || err != nil {
			ended = done
			return h.status, err
		}
	}
	return h.finish(ctx, "process", stream.Err())
}

// closeStream closes a process's stream: after reading its end when the
// process ended (closeAfterEnd), at once otherwise.
func closeStream[T any](stream *connect.ServerStreamForClient[T], ended bool) {
	if ended {
		closeAfterEnd(stream)
		return
	}
	_ = stream.Close()
}

// closeAfterEnd closes the stream of a process that ended, after reading
// what follows the end event: the end of the Connect stream, then of the
// HTTP body, which arrive with it or just after. A response closed before
// its end takes its connection along, and the next call would dial a new
// one (and den a new one into the sandbox). It reads a few messages and
// for a quarter of a second at most, so a stream that does not end after
// its end event cannot hold the caller.
func closeAfterEnd[T any](stream *connect.ServerStreamForClient[T]) {
	t := time.AfterFunc(endDrainTimeout, func() { _ = stream.Close() })
	defer t.Stop()
	for n := 0; n < 4 && stream.Receive(); n++ {
	}
	_ = stream.Close()
}

// endDrainTimeout bounds closeAfterEnd.
const endDrainTimeout = 250 * time.Millisecond

func startRequest(opts ExecOptions) *process.StartRequest {
	req := &process.StartRequest{
		Process: &process.ProcessConfig{Cmd: opts.Cmd, Args: opts.Args, Envs: opts.Env},
	}
	if opts.Cwd != "" {
		req.Process.Cwd = &opts.Cwd
	}
	if opts.Tag != "" {
		req.Tag = &opts.Tag
	}
	if opts.Stdin != nil {
		stdin := true
		req.Stdin = &stdin
	}
	if opts.PTY != nil {
		req.Pty = &process.PTY{Size: &process.PTY_Size{Cols: opts.PTY.Cols, Rows: opts.PTY.Rows}}
	}
	return req
}

// pumpStdin copies r to the process until EOF, an error, or ctx ends.
// It closes the process's stdin at EOF (not for a PTY).
func (s *Sandbox) pumpStdin(ctx context.Context, sel Selector, r io.Reader, pty bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if ctx.Err() != nil {
			return
		}
		if n > 0 {
			if sendErr := s.sendInput(ctx, sel, buf[:n], pty); sendErr != nil {
				return
			}
		}
		if errors.Is(err, io.EOF) && !pty {
			_ = s.CloseStdin(ctx, sel)
		}
		if err != nil {
			return
		}
	}
}

// eventHandler applies the events of a process stream.
type eventHandler struct {
	stdout, stderr io.Writer
	onStart        func(pid uint32)
	status         ExitStatus
	ended          bool
}

// handle applies one event; done is true after the end event.
func (h *eventHandler) handle(ev *process.ProcessEvent) (done bool, err error) {
	switch e := ev.GetEvent().(type) {
	case *process.ProcessEvent_Start:
		if h.onStart != nil {
			h.onStart(e.Start.GetPid())
		}
	case *process.ProcessEvent_Data:
		return false, h.write(e.Data)
	case *process.ProcessEvent_End:
		h.ended = true
		h.status = ExitStatus{
			Code:   int(e.End.GetExitCode()),
			Exited: e.End.GetExited(),
			Status: e.End.GetStatus(),
			Error:  e.End.GetError(),
		}
		return true, nil
	}
	return false, nil
}

func (h *eventHandler) write(d *process.ProcessEvent_DataEvent) error {
	var w io.Writer
	var b []byte
	switch o := d.GetOutput().(type) {
	case *process.ProcessEvent_DataEvent_Stdout:
		w, b = h.stdout, o.Stdout
	case *process.ProcessEvent_DataEvent_Pty:
		w, b = h.stdout, o.Pty
	case *process.ProcessEvent_DataEvent_Stderr:
		w, b = h.stderr, o.Stderr
	}
	if w == nil || len(b) == 0 {
		return nil
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write process output: %w", err)
	}
	return nil
}

// finish turns the end of a stream without an end event into an error.
func (h *eventHandler) finish(ctx context.Context, what string, err error) (ExitStatus, error) {
	if err != nil {
		return h.status, rpcErr(ctx, what, err)
	}
	if ctx.Err() != nil {
		return h.status, ctx.Err()
	}
	return h.status, fmt.Errorf("%s: stream ended without an exit status", what)
}

// rpcErr wraps an error of a guest RPC: the context's error when ctx ended,
// else the error as an *APIError carrying its Connect code.
func rpcErr(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s: %w", op, ctxErr)
	}
	return fmt.Errorf("%s: %w", op, fromConnect(err))
}
