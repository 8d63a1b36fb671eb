package sshgw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	"connectrpc.com/connect"
	"golang.org/x/crypto/ssh"

	pb "github.com/denhq/den/api/envd/process"
)

// Bounds on what a client may send before its command starts.
const (
	maxEnvVars     = 64
	maxEnvNameLen  = 256
	maxEnvValueLen = 32 << 10
	maxCommandLen  = 256 << 10
)

// loginShell runs the user's login shell (from /etc/passwd), or /bin/sh
// when it has none or it is missing, as a login shell.
const loginShell = `s=$(awk -F: -v u="$(id -u)" '$3==u {print $7; exit}' /etc/passwd 2>/dev/null); ` +
	`[ -x "$s" ] || s=/bin/sh; SHELL=$s; export SHELL; exec "$s" -l`

// session is one session channel: requests set it up (pty-req, env), one
// of shell, exec or subsystem starts what it runs, and the channel ends
// with its exit status.
type session struct {
	c   *conn
	ch  ssh.Channel
	ctx context.Context // ends when the channel does

	mu      sync.Mutex
	env     map[string]string
	pty     *ptyRequest
	started bool
	pid     uint32 // of the process once started; 0 for sftp
}

// ptyRequest is the payload of "pty-req" (RFC 4254 6.2).
type ptyRequest struct {
	Term             string
	Cols, Rows, W, H uint32
	Modes            string
}

// windowChange is the payload of "window-change" (RFC 4254 6.7).
type windowChange struct {
	Cols, Rows, W, H uint32
}

// session serves a session channel until it closes.
func (c *conn) session(nch ssh.NewChannel) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	s := &session{c: c, ch: ch, ctx: ctx, env: map[string]string{}}
	for req := range reqs {
		ok, msg := s.request(req)
		if msg != "" {
			_, _ = fmt.Fprintf(ch.Stderr(), "den: %s\r\n", msg)
		}
		if req.WantReply {
			_ = req.Reply(ok, nil)
		}
	}
	// The client closed the channel: a process still running is killed.
	s.kill()
}

// request handles one channel request: whether it succeeded, and a
// message for the client's stderr when it failed for a reason worth
// telling.
func (s *session) request(req *ssh.Request) (bool, string) {
	switch req.Type {
	case "pty-req":
		var p ptyRequest
		if ssh.Unmarshal(req.Payload, &p) != nil {
			return false, ""
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.started {
			return false, ""
		}
		s.pty = &p
		return true, ""
	case "window-change":
		var w windowChange
		if ssh.Unmarshal(req.Payload, &w) != nil {
			return false, ""
		}
		return s.resize(w.Cols, w.Rows), ""
	case "env":
		var e struct{ Name, Value string }
		if ssh.Unmarshal(req.Payload, &e) != nil {
			return false, ""
		}
		return s.setEnv(e.Name, e.Value), ""
	case "shell":
		return s.start(&pb.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", loginShell}})
	case "exec":
		var e struct{ Command string }
		if ssh.Unmarshal(req.Payload, &e) != nil || len(e.Command) > maxCommandLen {
			return false, "invalid exec request"
		}
		return s.start(&pb.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", e.Command}})
	case "subsystem":
		var sub struct{ Name string }
		if ssh.Unmarshal(req.Payload, &sub) != nil {
			return false, ""
		}
		if sub.Name != "sftp" {
			return false, fmt.Sprintf("unknown subsystem %q: den serves sftp", sub.Name)
		}
		return s.startSFTP()
	case "signal":
		var sig struct{ Signal string }
		if ssh.Unmarshal(req.Payload, &sig) != nil {
			return false, ""
		}
		return s.signal(sig.Signal), ""
	case "keepalive@openssh.com":
		return true, ""
	}
	// auth-agent-req@openssh.com, x11-req and anything else: refused.
	return false, ""
}

// setEnv records a variable for the process; false for a bad or excess
// one, or once the process started.
func (s *session) setEnv(name, value string) bool {
	if name == "" || len(name) > maxEnvNameLen || len(value) > maxEnvValueLen ||
		strings.ContainsAny(name, "=\x00") || strings.ContainsRune(value, 0) || !utf8.ValidString(name+value) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || (len(s.env) >= maxEnvVars && s.env[name] == "") {
		return false
	}
	s.env[name] = value
	return true
}

// claim marks the session started; false when it already was.
func (s *session) claim() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return false
	}
	s.started = true
	return true
}

// start starts cfg as the session's process and runs it on a goroutine:
// its output to the channel, the channel's data to its stdin, its end as
// exit-status or exit-signal.
func (s *session) start(cfg *pb.ProcessConfig) (bool, string) {
	if !s.claim() {
		return false, ""
	}
	s.mu.Lock()
	cfg.Envs = s.env
	req := &pb.StartRequest{Process: cfg, Stdin: ptrTo(true)}
	if p := s.pty; p != nil {
		if p.Term != "" {
			cfg.Envs["TERM"] = p.Term
		}
		req.Pty = &pb.PTY{Size: &pb.PTY_Size{Cols: clampSize(p.Cols, 80), Rows: clampSize(p.Rows, 24)}}
	}
	s.mu.Unlock()
	stream, err := s.c.guest.process.Start(s.ctx, connect.NewRequest(req))
	if err != nil {
		return false, "start: " + connectMessage(err)
	}
	s.c.goChannel(func() { s.run(stream) })
	return true, ""
}

// run follows the process's events until its end, then reports its exit
// and closes the channel.
func (s *session) run(stream *connect.ServerStreamForClient[pb.StartResponse]) {
	var stdin sync.WaitGroup
	defer stdin.Wait() // last: the channel's close ends its reads
	defer s.ch.Close()
	defer stream.Close()
	for stream.Receive() {
		switch e := stream.Msg().GetEvent().GetEvent().(type) {
		case *pb.ProcessEvent_Start:
			s.mu.Lock()
			s.pid = e.Start.GetPid()
			pty := s.pty != nil
			s.mu.Unlock()
			stdin.Add(1)
			go func() { defer stdin.Done(); s.pumpStdin(e.Start.GetPid(), pty) }()
		case *pb.ProcessEvent_Data:
			if err := s.write(e.Data); err != nil {
				s.kill()
				return
			}
		case *pb.ProcessEvent_End:
			s.mu.Lock()
			s.pid = 0
			s.mu.Unlock()
			_ = s.ch.CloseWrite()
			s.exit(e.End)
			return
		}
	}
	if s.ctx.Err() == nil {
		_, _ = fmt.Fprintf(s.ch.Stderr(), "den: the sandbox's process stream broke: %v\r\n", stream.Err())
		_, _ = s.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{255}))
	}
}

// write copies one output event to the channel (stderr as extended data).
func (s *session) write(d *pb.ProcessEvent_DataEvent) error {
	var err error
	switch o := d.GetOutput().(type) {
	case *pb.ProcessEvent_DataEvent_Stdout:
		_, err = s.ch.Write(o.Stdout)
	case *pb.ProcessEvent_DataEvent_Pty:
		_, err = s.ch.Write(o.Pty)
	case *pb.ProcessEvent_DataEvent_Stderr:
		_, err = s.ch.Stderr().Write(o.Stderr)
	}
	return err
}

// pumpStdin sends the channel's data to process pid until the client's
// EOF, then closes its stdin (not for a PTY: there EOF is a ^D the client
// sends as data). The data goes in order on one StreamInput call (a
// client stream: no round trip per chunk). It stops when the session
// ends.
func (s *session) pumpStdin(pid uint32, pty bool) {
	sel := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}}
	stream := s.c.guest.process.StreamInput(s.ctx)
	err := stream.Send(&pb.StreamInputRequest{Event: &pb.StreamInputRequest_Start{Start: &pb.StreamInputRequest_StartEvent{Process: sel}}})
	buf := make([]byte, 64<<10)
	var readErr error
	for err == nil && readErr == nil {
		var n int
		n, readErr = s.ch.Read(buf)
		if n > 0 {
			in := &pb.ProcessInput{}
			if pty {
				in.Input = &pb.ProcessInput_Pty{Pty: buf[:n]}
			} else {
				in.Input = &pb.ProcessInput_Stdin{Stdin: buf[:n]}
			}
			err = stream.Send(&pb.StreamInputRequest{Event: &pb.StreamInputRequest_Data{Data: &pb.StreamInputRequest_DataEvent{Input: in}}})
		}
	}
	// CloseAndReceive returns once the agent has written everything sent.
	if _, cerr := stream.CloseAndReceive(); err == nil && cerr == nil && errors.Is(readErr, io.EOF) && !pty {
		_, _ = s.c.guest.process.CloseStdin(s.ctx, connect.NewRequest(&pb.CloseStdinRequest{Process: sel}))
	}
}

// resize applies a window change to the process's PTY.
func (s *session) resize(cols, rows uint32) bool {
	s.mu.Lock()
	pid, pty := s.pid, s.pty
	if pty != nil {
		pty.Cols, pty.Rows = cols, rows
	}
	s.mu.Unlock()
	if pty == nil || pid == 0 {
		return pty != nil
	}
	req := &pb.UpdateRequest{Process: &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}},
		Pty: &pb.PTY{Size: &pb.PTY_Size{Cols: clampSize(cols, 80), Rows: clampSize(rows, 24)}}}
	_, err := s.c.guest.process.Update(s.ctx, connect.NewRequest(req))
	return err == nil
}

// signal sends an RFC 4254 signal name ("INT", "TERM", ...) to the
// process.
func (s *session) signal(name string) bool {
	sig, ok := signalNumbers[name]
	s.mu.Lock()
	pid := s.pid
	s.mu.Unlock()
	if !ok || pid == 0 {
		return false
	}
	return s.sendSignal(pid, sig) == nil
}

func (s *session) sendSignal(pid uint32, sig pb.Signal) error {
	req := &pb.SendSignalRequest{Process: &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}}, Signal: sig}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), upgradeTimeout)
	defer cancel()
	_, err := s.c.guest.process.SendSignal(ctx, connect.NewRequest(req))
	return err
}

// kill ends a process still running when its channel went away.
func (s *session) kill() {
	s.mu.Lock()
	pid := s.pid
	s.pid = 0
	s.mu.Unlock()
	if pid != 0 {
		_ = s.sendSignal(pid, pb.Signal_SIGNAL_SIGKILL)
	}
}

// clampSize returns v, or def for 0, bounded to what a terminal can be.
func clampSize(v, def uint32) uint32 {
	if v == 0 {
		return def
	}
	return min(v, 4096)
}

func ptrTo[T any](v T) *T { return &v }

// connectMessage is the message of a guest RPC error.
func connectMessage(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Message()
	}
	return err.Error()
}
