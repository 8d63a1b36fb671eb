package den

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"connectrpc.com/connect"

	"github.com/denhq/den/api/envd/process"
)

// Signal is a signal that can be sent to a sandbox process.
type Signal int

// The signals the guest protocol carries.
const (
	SIGTERM Signal = 15
	SIGKILL Signal = 9
)

func (s Signal) String() string {
	switch s {
	case SIGTERM:
		return "SIGTERM"
	case SIGKILL:
		return "SIGKILL"
	}
	return fmt.Sprintf("signal %d", int(s))
}

// ProcessInfo describes a running process of a sandbox.
type ProcessInfo struct {
	PID  uint32
	Tag  string
	Cmd  string
	Args []string
	Env  map[string]string
	Cwd  string
}

// Processes lists the processes the guest agent started and that are still
// running.
func (s *Sandbox) Processes(ctx context.Context) ([]ProcessInfo, error) {
	resp, err := s.proc().List(ctx, connect.NewRequest(&process.ListRequest{}))
	if err != nil {
		return nil, rpcErr(ctx, "list processes", err)
	}
	var out []ProcessInfo
	for _, p := range resp.Msg.GetProcesses() {
		cfg := p.GetConfig()
		out = append(out, ProcessInfo{
			PID: p.GetPid(), Tag: p.GetTag(), Cmd: cfg.GetCmd(),
			Args: cfg.GetArgs(), Env: cfg.GetEnvs(), Cwd: cfg.GetCwd(),
		})
	}
	return out, nil
}

// Connect re-attaches to a running process: it streams the output produced
// from now on to the writers (nil discards) and waits for the process to
// end. Like Exec, cancelling ctx stops waiting without killing the process.
func (s *Sandbox) Connect(ctx context.Context, sel Selector, stdout, stderr io.Writer) (ExitStatus, error) {
	return s.Attach(ctx, sel, AttachOptions{Stdout: stdout, Stderr: stderr})
}

// AttachOptions say where the output of a re-attached process goes.
type AttachOptions struct {
	// Stdout and Stderr receive the output produced after attaching; nil
	// discards it. With a PTY all output goes to Stdout.
	Stdout, Stderr io.Writer
	// OnAttach, when not nil, is called with the process's PID once the
	// stream is attached: output produced after it returns is delivered.
	OnAttach func(pid uint32)
}

// Attach is Connect with a notification of the moment of attachment.
func (s *Sandbox) Attach(ctx context.Context, sel Selector, opts AttachOptions) (ExitStatus, error) {
	req := &process.ConnectRequest{Process: sel.proto()}
	stream, err := s.proc().Connect(ctx, connect.NewRequest(req))
	if err != nil {
		return ExitStatus{}, rpcErr(ctx, "connect to process "+sel.String(), err)
	}
	ended := false
	defer func() { closeStream(stream, ended) }()
	h := &eventHandler{stdout: opts.Stdout, stderr: opts.Stderr, onStart: opts.OnAttach}
	for stream.Receive() {
		if done, err := h.handle(stream.Msg().GetEvent()); done || err != nil {
			ended = done
			return h.status, err
		}
	}
	return h.finish(ctx, "connect to process "+sel.String(), stream.Err())
}

// Signal sends sig (SIGTERM or SIGKILL) to the selected process.
func (s *Sandbox) Signal(ctx context.Context, sel Selector, sig Signal) error {
	req := &process.SendSignalRequest{Process: sel.proto(), Signal: process.Signal(sig)}
	if _, err := s.proc().SendSignal(ctx, connect.NewRequest(req)); err != nil {
		return rpcErr(ctx, fmt.Sprintf("send %v to process %v", sig, sel), err)
	}
	return nil
}

// SendInput writes data to the selected process's stdin (the process must
// have been started with stdin: ExecOptions.Stdin not nil).
func (s *Sandbox) SendInput(ctx context.Context, sel Selector, data []byte) error {
	return s.sendInput(ctx, sel, data, false)
}

// SendPTYInput writes data to the selected process's pseudo-terminal, as
// if typed (a Ctrl-C is the byte 0x03).
func (s *Sandbox) SendPTYInput(ctx context.Context, sel Selector, data []byte) error {
	return s.sendInput(ctx, sel, data, true)
}

func (s *Sandbox) sendInput(ctx context.Context, sel Selector, data []byte, pty bool) error {
	in := &process.ProcessInput{Input: &process.ProcessInput_Stdin{Stdin: data}}
	if pty {
		in.Input = &process.ProcessInput_Pty{Pty: data}
	}
	req := &process.SendInputRequest{Process: sel.proto(), Input: in}
	if _, err := s.proc().SendInput(ctx, connect.NewRequest(req)); err != nil {
		return rpcErr(ctx, "send input to process "+sel.String(), err)
	}
	return nil
}

// CloseStdin closes the selected process's stdin, so it reads EOF.
func (s *Sandbox) CloseStdin(ctx context.Context, sel Selector) error {
	req := &process.CloseStdinRequest{Process: sel.proto()}
	if _, err := s.proc().CloseStdin(ctx, connect.NewRequest(req)); err != nil {
		return rpcErr(ctx, "close stdin of process "+sel.String(), err)
	}
	return nil
}

// ResizePTY changes the size of the selected process's pseudo-terminal.
func (s *Sandbox) ResizePTY(ctx context.Context, sel Selector, cols, rows uint32) error {
	req := &process.UpdateRequest{
		Process: sel.proto(),
		Pty:     &process.PTY{Size: &process.PTY_Size{Cols: cols, Rows: rows}},
	}
	if _, err := s.proc().Update(ctx, connect.NewRequest(req)); err != nil {
		return rpcErr(ctx, "resize terminal of process "+sel.String(), err)
	}
	return nil
}

// RunResult is the outcome of Run.
type RunResult struct {
	ExitStatus
	Stdout, Stderr []byte
}

// Run runs a shell command line with /bin/sh -c, collects its output in
// memory and waits for it to end. Use Exec for large outputs or input.
func (s *Sandbox) Run(ctx context.Context, cmdline string) (*RunResult, error) {
	var stdout, stderr bytes.Buffer
	st, err := s.Exec(ctx, ExecOptions{
		Cmd: "/bin/sh", Args: []string{"-c", cmdline}, Stdout: &stdout, Stderr: &stderr,
	})
	if err != nil {
		return nil, err
	}
	return &RunResult{ExitStatus: st, Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}, nil
}
