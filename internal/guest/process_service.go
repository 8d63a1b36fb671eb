package guest

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"

	pb "github.com/denhq/den/api/envd/process"
	"github.com/denhq/den/internal/errdefs"
)

// defaultKeepalive is the keepalive interval of streams whose request has
// no Keepalive-Ping-Interval header.
const defaultKeepalive = 50 * time.Second

// processService implements processconnect.ProcessHandler.
type processService struct {
	a *Agent
}

// Start starts a process and streams its events until it ends. The process
// outlives the stream: a client that goes away can re-attach with Connect.
// A Connect-Timeout-Ms header bounds the process's life, as in envd.
func (s *processService) Start(ctx context.Context, req *connect.Request[pb.StartRequest], stream *connect.ServerStream[pb.StartResponse]) error {
	acct, err := s.a.account(req.Header(), "")
	if err != nil {
		return toConnect(err)
	}
	timeout := headerDuration(req.Header(), "Connect-Timeout-Ms", time.Millisecond)
	p, sub, err := s.a.prepareAndSpawn(req.Msg, acct, timeout)
	if err != nil {
		return toConnect(err)
	}
	defer p.unsubscribe(sub)
	send := func(ev *pb.ProcessEvent) error { return stream.Send(&pb.StartResponse{Event: ev}) }
	return toConnect(follow(ctx, p, sub, keepaliveInterval(req.Header()), send))
}

// Connect re-attaches to a running process: the stream gets a start event,
// then the output produced from now on, then the end event.
func (s *processService) Connect(ctx context.Context, req *connect.Request[pb.ConnectRequest], stream *connect.ServerStream[pb.ConnectResponse]) error {
	p, err := s.a.procs.get(req.Msg.GetProcess())
	if err != nil {
		return toConnect(err)
	}
	sub, err := p.subscribe()
	if err != nil {
		return toConnect(err)
	}
	defer p.unsubscribe(sub)
	send := func(ev *pb.ProcessEvent) error { return stream.Send(&pb.ConnectResponse{Event: ev}) }
	return toConnect(follow(ctx, p, sub, keepaliveInterval(req.Header()), send))
}

// follow sends p's start event, then sub's events and keepalives, until the
// end event, the client going away, or sub being dropped for falling behind.
func follow(ctx context.Context, p *proc, sub *subscriber, keepalive time.Duration, send func(*pb.ProcessEvent) error) error {
	start := &pb.ProcessEvent_StartEvent{Pid: p.pid}
	if err := send(&pb.ProcessEvent{Event: &pb.ProcessEvent_Start{Start: start}}); err != nil {
		return err
	}
	tick := time.NewTicker(keepalive)
	defer tick.Stop()
	for {
		select {
		case ev := <-sub.ch:
			if err := send(ev); err != nil {
				return err
			}
			if ev.GetEnd() != nil {
				return nil
			}
		case <-tick.C:
			ka := &pb.ProcessEvent{Event: &pb.ProcessEvent_Keepalive{Keepalive: &pb.ProcessEvent_KeepAlive{}}}
			if err := send(ka); err != nil {
				return err
			}
		case <-sub.gone:
			return errdefs.New(errdefs.ResourceExhausted, "stream fell behind the output of process %d", p.pid)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// keepaliveInterval reads Keepalive-Ping-Interval (seconds).
func keepaliveInterval(h http.Header) time.Duration {
	if d := headerDuration(h, "Keepalive-Ping-Interval", time.Second); d > 0 {
		return d
	}
	return defaultKeepalive
}

// headerDuration reads a positive integer header in units of unit; 0 when
// absent or malformed.
func headerDuration(h http.Header, key string, unit time.Duration) time.Duration {
	n, err := strconv.ParseInt(h.Get(key), 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(n) * unit
}

// List returns the running processes.
func (s *processService) List(_ context.Context, _ *connect.Request[pb.ListRequest]) (*connect.Response[pb.ListResponse], error) {
	resp := &pb.ListResponse{}
	for _, p := range s.a.procs.list() {
		info := &pb.ProcessInfo{Config: p.cfg, Pid: p.pid}
		if p.tag != "" {
			info.Tag = &p.tag
		}
		resp.Processes = append(resp.Processes, info)
	}
	return connect.NewResponse(resp), nil
}

// Update resizes a process's PTY.
func (s *processService) Update(_ context.Context, req *connect.Request[pb.UpdateRequest]) (*connect.Response[pb.UpdateResponse], error) {
	p, err := s.a.procs.get(req.Msg.GetProcess())
	if err != nil {
		return nil, toConnect(err)
	}
	if sz := req.Msg.GetPty().GetSize(); sz != nil {
		if p.tty == nil {
			return nil, toConnect(errdefs.New(errdefs.FailedPrecondition, "process %d has no pty", p.pid))
		}
		if err := setPTYSize(p.tty, uint16(sz.Rows), uint16(sz.Cols)); err != nil {
			return nil, toConnect(errdefs.Wrap(errdefs.Internal, err, "resize pty"))
		}
	}
	return connect.NewResponse(&pb.UpdateResponse{}), nil
}

// setPTYSize sets the window size of the PTY master tty. It goes through
// the file's syscall conn, which holds the descriptor open for the ioctl:
// a resize racing with the process's end (which closes the master) fails
// instead of reaching whatever file reused the number.
func setPTYSize(tty *os.File, rows, cols uint16) error {
	rc, err := tty.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	if err := rc.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); err != nil {
		return err
	}
	return ioErr
}

// SendInput writes to a process's stdin or PTY.
func (s *processService) SendInput(ctx context.Context, req *connect.Request[pb.SendInputRequest]) (*connect.Response[pb.SendInputResponse], error) {
	p, err := s.a.procs.get(req.Msg.GetProcess())
	if err != nil {
		return nil, toConnect(err)
	}
	if err := p.write(ctx, req.Msg.GetInput()); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.SendInputResponse{}), nil
}

// StreamInput writes a stream of inputs, in order, to the process named by
// the stream's first (start) message.
func (s *processService) StreamInput(ctx context.Context, stream *connect.ClientStream[pb.StreamInputRequest]) (*connect.Response[pb.StreamInputResponse], error) {
	var p *proc
	for stream.Receive() {
		msg := stream.Msg()
		switch ev := msg.GetEvent().(type) {
		case *pb.StreamInputRequest_Start:
			got, err := s.a.procs.get(ev.Start.GetProcess())
			if err != nil {
				return nil, toConnect(err)
			}
			p = got
		case *pb.StreamInputRequest_Data:
			if p == nil {
				return nil, toConnect(errdefs.New(errdefs.InvalidArgument, "input before the start message"))
			}
			if err := p.write(ctx, ev.Data.GetInput()); err != nil {
				return nil, toConnect(err)
			}
		}
	}
	if err := stream.Err(); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.StreamInputResponse{}), nil
}

// SendSignal sends SIGTERM or SIGKILL to a process's whole tree.
func (s *processService) SendSignal(_ context.Context, req *connect.Request[pb.SendSignalRequest]) (*connect.Response[pb.SendSignalResponse], error) {
	p, err := s.a.procs.get(req.Msg.GetProcess())
	if err != nil {
		return nil, toConnect(err)
	}
	var sig syscall.Signal
	switch req.Msg.GetSignal() {
	case pb.Signal_SIGNAL_SIGTERM:
		sig = syscall.SIGTERM
	case pb.Signal_SIGNAL_SIGKILL:
		sig = syscall.SIGKILL
	case pb.Signal(syscall.SIGHUP), pb.Signal(syscall.SIGINT), pb.Signal(syscall.SIGQUIT),
		pb.Signal(syscall.SIGUSR1), pb.Signal(syscall.SIGUSR2), pb.Signal(syscall.SIGALRM):
		// Beyond envd's two: the signals an SSH client may send (RFC 4254
		// 6.9), by their Linux numbers.
		sig = syscall.Signal(req.Msg.GetSignal())
	default:
		return nil, toConnect(errdefs.New(errdefs.InvalidArgument, "unsupported signal %v", req.Msg.GetSignal()))
	}
	if err := p.signal(sig); err != nil {
		return nil, toConnect(errdefs.Wrap(errdefs.Internal, err, "signal process %d", p.pid))
	}
	return connect.NewResponse(&pb.SendSignalResponse{}), nil
}

// CloseStdin closes a process's stdin, so it reads EOF.
func (s *processService) CloseStdin(_ context.Context, req *connect.Request[pb.CloseStdinRequest]) (*connect.Response[pb.CloseStdinResponse], error) {
	p, err := s.a.procs.get(req.Msg.GetProcess())
	if err != nil {
		return nil, toConnect(err)
	}
	if p.tty != nil {
		return nil, toConnect(errdefs.New(errdefs.FailedPrecondition, "process %d has a pty; send EOT (0x04) instead", p.pid))
	}
	p.inMu.Lock()
	defer p.inMu.Unlock()
	if p.stdin != nil {
		p.stdin.Close()
		p.stdin = nil
	}
	return connect.NewResponse(&pb.CloseStdinResponse{}), nil
}

// write sends in to the process's stdin or PTY. A write blocked on a full
// pipe gives up when ctx ends.
func (p *proc) write(ctx context.Context, in *pb.ProcessInput) error {
	switch v := in.GetInput().(type) {
	case *pb.ProcessInput_Pty:
		if p.tty == nil {
			return errdefs.New(errdefs.FailedPrecondition, "process %d has no pty", p.pid)
		}
		_, err := p.tty.Write(v.Pty)
		return err
	case *pb.ProcessInput_Stdin:
		return p.writeStdin(ctx, v.Stdin)
	}
	return errdefs.New(errdefs.InvalidArgument, "input needs stdin or pty bytes")
}

func (p *proc) writeStdin(ctx context.Context, b []byte) error {
	if p.tty != nil {
		_, err := p.tty.Write(b) // envd lets stdin input reach a PTY too
		return err
	}
	p.inMu.Lock()
	f := p.stdin
	p.inMu.Unlock()
	if f == nil {
		return errdefs.New(errdefs.FailedPrecondition, "stdin of process %d is not open (start it with stdin=true)", p.pid)
	}
	// One writer at a time keeps inputs in order. The lock is not inMu, so
	// CloseStdin can close f and so end a write blocked on a full pipe.
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = f.SetWriteDeadline(time.Now())
		close(fired)
	})
	defer func() {
		if !stop() { // ctx ended: clear the deadline it set, once it is set
			<-fired
			_ = f.SetWriteDeadline(time.Time{})
		}
	}()
	_, err := f.Write(b)
	switch {
	case errors.Is(err, syscall.EPIPE), errors.Is(err, os.ErrClosed):
		return errdefs.Wrap(errdefs.FailedPrecondition, err, "stdin of process %d is closed", p.pid)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errdefs.Wrap(errdefs.Canceled, ctx.Err(), "write stdin of process %d", p.pid)
	}
	return err
}
