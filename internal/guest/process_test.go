package guest

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	pb "github.com/denhq/den/api/envd/process"
)

func TestStart(t *testing.T) {
	e := newEnv(t)
	cwdSub := "sub"
	if err := os.Mkdir(e.home+"/"+cwdSub, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  *pb.ProcessConfig
		want result
	}{
		{
			name: "stdout and stderr",
			cfg:  &pb.ProcessConfig{Cmd: "sh", Args: []string{"-c", "echo out; echo err >&2"}},
			want: result{stdout: "out\n", stderr: "err\n", end: &pb.ProcessEvent_EndEvent{Exited: true, Status: "exit status 0"}},
		},
		{
			name: "nonzero exit",
			cfg:  &pb.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", "exit 3"}},
			want: result{end: &pb.ProcessEvent_EndEvent{ExitCode: 3, Exited: true, Status: "exit status 3"}},
		},
		{
			name: "env, home and default cwd",
			cfg:  &pb.ProcessConfig{Cmd: "sh", Args: []string{"-c", `echo "$DEN_BASE $FOO $USER $HOME"; pwd`}, Envs: map[string]string{"FOO": "bar"}},
			want: result{stdout: "base bar tester " + e.home + "\n" + e.home + "\n", end: &pb.ProcessEvent_EndEvent{Exited: true, Status: "exit status 0"}},
		},
		{
			name: "relative cwd",
			cfg:  &pb.ProcessConfig{Cmd: "pwd", Cwd: &cwdSub},
			want: result{stdout: e.home + "/sub\n", end: &pb.ProcessEvent_EndEvent{Exited: true, Status: "exit status 0"}},
		},
		{
			name: "stdin is /dev/null without stdin flag",
			cfg:  &pb.ProcessConfig{Cmd: "cat"},
			want: result{end: &pb.ProcessEvent_EndEvent{Exited: true, Status: "exit status 0"}},
		},
	}
	for _, c := range e.codecs() {
		for _, tt := range tests {
			t.Run(c.name+"/"+tt.name, func(t *testing.T) {
				stream, err := e.proc(c).Start(testCtx(t), connect.NewRequest(&pb.StartRequest{Process: tt.cfg}))
				if err != nil {
					t.Fatal(err)
				}
				got := collect(t, stream)
				if got.pid == 0 {
					t.Error("no start event with a pid")
				}
				got.pid = 0
				if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(result{}), protocmp.Transform()); diff != "" {
					t.Errorf("result (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestStdinAndCloseStdin(t *testing.T) {
	e := newEnv(t)
	for _, c := range e.codecs() {
		t.Run(c.name, func(t *testing.T) {
			ctx := testCtx(t)
			client := e.proc(c)
			stdin := true
			req := connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "cat"}, Stdin: &stdin})
			stream, err := client.Start(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			var r result
			readUntil(t, stream, &r, func(r *result) bool { return r.pid != 0 })
			sel := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: r.pid}}
			in := &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: []byte("hello\n")}}
			if _, err := client.SendInput(ctx, connect.NewRequest(&pb.SendInputRequest{Process: sel, Input: in})); err != nil {
				t.Fatal(err)
			}
			readUntil(t, stream, &r, func(r *result) bool { return r.stdout == "hello\n" })
			if _, err := client.CloseStdin(ctx, connect.NewRequest(&pb.CloseStdinRequest{Process: sel})); err != nil {
				t.Fatal(err)
			}
			readUntil(t, stream, &r, func(r *result) bool { return r.end != nil })
			if r.end.GetExitCode() != 0 || !r.end.GetExited() {
				t.Errorf("end = %v, want exit 0", r.end)
			}
		})
	}
}

func TestPTY(t *testing.T) {
	e := newEnv(t)
	for _, c := range e.codecs() {
		t.Run(c.name, func(t *testing.T) {
			ctx := testCtx(t)
			client := e.proc(c)
			req := connect.NewRequest(&pb.StartRequest{
				Process: &pb.ProcessConfig{Cmd: "sh", Envs: map[string]string{"PS1": "$ "}},
				Pty:     &pb.PTY{Size: &pb.PTY_Size{Cols: 80, Rows: 24}},
			})
			stream, err := client.Start(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			var r result
			readUntil(t, stream, &r, func(r *result) bool { return r.pid != 0 })
			sel := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: r.pid}}
			send := func(s string) {
				t.Helper()
				in := &pb.ProcessInput{Input: &pb.ProcessInput_Pty{Pty: []byte(s)}}
				if _, err := client.SendInput(ctx, connect.NewRequest(&pb.SendInputRequest{Process: sel, Input: in})); err != nil {
					t.Fatal(err)
				}
			}
			send("tty >/dev/null && echo is-a-tty; stty size\n")
			readUntil(t, stream, &r, func(r *result) bool { return strings.Contains(r.pty, "is-a-tty\r\n24 80") })
			upd := &pb.UpdateRequest{Process: sel, Pty: &pb.PTY{Size: &pb.PTY_Size{Cols: 100, Rows: 30}}}
			if _, err := client.Update(ctx, connect.NewRequest(upd)); err != nil {
				t.Fatal(err)
			}
			send("stty size\n")
			readUntil(t, stream, &r, func(r *result) bool { return strings.Contains(r.pty, "30 100") })
			_, err = client.CloseStdin(ctx, connect.NewRequest(&pb.CloseStdinRequest{Process: sel}))
			if got := codeOf(err); got != connect.CodeFailedPrecondition {
				t.Errorf("CloseStdin on a pty: code %v, want failed_precondition", got)
			}
			send("exit 5\n")
			readUntil(t, stream, &r, func(r *result) bool { return r.end != nil })
			if r.end.GetExitCode() != 5 {
				t.Errorf("exit code %d, want 5", r.end.GetExitCode())
			}
		})
	}
}

func TestConnectByTag(t *testing.T) {
	e := newEnv(t)
	for _, c := range e.codecs() {
		t.Run(c.name, func(t *testing.T) {
			ctx := testCtx(t)
			client := e.proc(c)
			tag, stdin := "tagged-"+c.name, true
			req := connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "cat"}, Tag: &tag, Stdin: &stdin})
			first, err := client.Start(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			var r1 result
			readUntil(t, first, &r1, func(r *result) bool { return r.pid != 0 })
			sel := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Tag{Tag: tag}}
			input := func(s string) {
				in := &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: []byte(s)}}
				if _, err := client.SendInput(ctx, connect.NewRequest(&pb.SendInputRequest{Process: sel, Input: in})); err != nil {
					t.Fatal(err)
				}
			}
			input("before\n")
			readUntil(t, first, &r1, func(r *result) bool { return r.stdout == "before\n" })

			second, err := e.proc(e.codecs()[1]).Connect(ctx, connect.NewRequest(&pb.ConnectRequest{Process: sel}))
			if err != nil {
				t.Fatal(err)
			}
			var r2 result
			readUntil(t, second, &r2, func(r *result) bool { return r.pid != 0 })
			input("after\n")
			if _, err := client.CloseStdin(ctx, connect.NewRequest(&pb.CloseStdinRequest{Process: sel})); err != nil {
				t.Fatal(err)
			}
			readUntil(t, first, &r1, func(r *result) bool { return r.end != nil })
			readUntil(t, second, &r2, func(r *result) bool { return r.end != nil })
			if r2.pid != r1.pid {
				t.Errorf("connect pid %d, start pid %d", r2.pid, r1.pid)
			}
			if r1.stdout != "before\nafter\n" || r2.stdout != "after\n" {
				t.Errorf("stdout: starter %q (want before+after), connector %q (want after)", r1.stdout, r2.stdout)
			}
		})
	}
}

func TestSendSignalKillsTree(t *testing.T) {
	e := newEnv(t)
	for _, sig := range []pb.Signal{pb.Signal_SIGNAL_SIGKILL, pb.Signal_SIGNAL_SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			ctx := testCtx(t)
			client := e.proc(e.codecs()[0])
			stream, err := client.Start(ctx, startReq("sh", "-c", "sleep 1000 & sleep 1000; wait"))
			if err != nil {
				t.Fatal(err)
			}
			var r result
			readUntil(t, stream, &r, func(r *result) bool { return r.pid != 0 })
			var tree []int
			waitFor(t, "two sleeps", func() bool {
				tree = descendants(int(r.pid))
				return len(tree) >= 2
			})
			sel := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: r.pid}}
			if _, err := client.SendSignal(ctx, connect.NewRequest(&pb.SendSignalRequest{Process: sel, Signal: sig})); err != nil {
				t.Fatal(err)
			}
			readUntil(t, stream, &r, func(r *result) bool { return r.end != nil })
			if r.end.GetExited() || r.end.GetExitCode() != -1 || !strings.HasPrefix(r.end.GetStatus(), "signal: ") {
				t.Errorf("end = %v, want killed by a signal", r.end)
			}
			for _, pid := range tree {
				waitFor(t, "child "+strconv.Itoa(pid)+" to die", func() bool { return !alive(pid) })
			}
		})
	}
}

func TestList(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	client := e.proc(e.codecs()[1])
	var pids []uint32
	for _, tag := range []string{"a", "b"} {
		req := connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "sleep", Args: []string{"1000"}}, Tag: &tag})
		stream, err := client.Start(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		var r result
		readUntil(t, stream, &r, func(r *result) bool { return r.pid != 0 })
		pids = append(pids, r.pid)
	}
	resp, err := client.List(ctx, connect.NewRequest(&pb.ListRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	a, b := "a", "b"
	want := []*pb.ProcessInfo{
		{Config: &pb.ProcessConfig{Cmd: "sleep", Args: []string{"1000"}}, Pid: pids[0], Tag: &a},
		{Config: &pb.ProcessConfig{Cmd: "sleep", Args: []string{"1000"}}, Pid: pids[1], Tag: &b},
	}
	slices.SortFunc(want, func(x, y *pb.ProcessInfo) int { return int(x.Pid) - int(y.Pid) })
	if diff := cmp.Diff(want, resp.Msg.GetProcesses(), protocmp.Transform()); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	e.agent.Close()
	for _, pid := range pids {
		waitFor(t, "Close to kill "+strconv.Itoa(int(pid)), func() bool { return !alive(int(pid)) })
	}
}

func TestProcessErrors(t *testing.T) {
	e := newEnv(t)
	stdin, tag := true, "busy"
	busy := connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "cat"}, Tag: &tag, Stdin: &stdin})
	stream, err := e.proc(e.codecs()[0]).Start(testCtx(t), busy)
	if err != nil {
		t.Fatal(err)
	}
	var r result
	readUntil(t, stream, &r, func(r *result) bool { return r.pid != 0 })
	unknownPID := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: 1 << 30}}
	unknownTag := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Tag{Tag: "nope"}}
	missingDir := "/does/not/exist"
	tests := []struct {
		name string
		do   func(ctx context.Context, c codec) error
		want connect.Code
	}{
		{name: "connect unknown pid", want: connect.CodeNotFound, do: func(ctx context.Context, c codec) error {
			s, err := e.proc(c).Connect(ctx, connect.NewRequest(&pb.ConnectRequest{Process: unknownPID}))
			if err != nil {
				return err
			}
			for s.Receive() {
			}
			return s.Err()
		}},
		{name: "signal unknown tag", want: connect.CodeNotFound, do: func(ctx context.Context, c codec) error {
			_, err := e.proc(c).SendSignal(ctx, connect.NewRequest(&pb.SendSignalRequest{Process: unknownTag, Signal: pb.Signal_SIGNAL_SIGKILL}))
			return err
		}},
		{name: "input unknown pid", want: connect.CodeNotFound, do: func(ctx context.Context, c codec) error {
			in := &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: []byte("x")}}
			_, err := e.proc(c).SendInput(ctx, connect.NewRequest(&pb.SendInputRequest{Process: unknownPID, Input: in}))
			return err
		}},
		{name: "empty cmd", want: connect.CodeInvalidArgument, do: func(ctx context.Context, c codec) error {
			return startErr(ctx, e, c, startReq(""))
		}},
		{name: "missing executable", want: connect.CodeInvalidArgument, do: func(ctx context.Context, c codec) error {
			return startErr(ctx, e, c, startReq("no-such-command-den"))
		}},
		{name: "missing cwd", want: connect.CodeInvalidArgument, do: func(ctx context.Context, c codec) error {
			return startErr(ctx, e, c, connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "true", Cwd: &missingDir}}))
		}},
		{name: "unknown user", want: connect.CodeInvalidArgument, do: func(ctx context.Context, c codec) error {
			return startErr(ctx, e, c, asUser(startReq("true"), "nosuchuser"))
		}},
		{name: "duplicate tag", want: connect.CodeAlreadyExists, do: func(ctx context.Context, c codec) error {
			return startErr(ctx, e, c, connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "true"}, Tag: &tag}))
		}},
		{name: "no selector", want: connect.CodeInvalidArgument, do: func(ctx context.Context, c codec) error {
			_, err := e.proc(c).CloseStdin(ctx, connect.NewRequest(&pb.CloseStdinRequest{}))
			return err
		}},
		{name: "resize without pty", want: connect.CodeFailedPrecondition, do: func(ctx context.Context, c codec) error {
			sel := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Tag{Tag: tag}}
			upd := &pb.UpdateRequest{Process: sel, Pty: &pb.PTY{Size: &pb.PTY_Size{Cols: 1, Rows: 1}}}
			_, err := e.proc(c).Update(ctx, connect.NewRequest(upd))
			return err
		}},
		{name: "unspecified signal", want: connect.CodeInvalidArgument, do: func(ctx context.Context, c codec) error {
			sel := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Tag{Tag: tag}}
			_, err := e.proc(c).SendSignal(ctx, connect.NewRequest(&pb.SendSignalRequest{Process: sel}))
			return err
		}},
	}
	for _, c := range e.codecs() {
		for _, tt := range tests {
			t.Run(c.name+"/"+tt.name, func(t *testing.T) {
				if got := codeOf(tt.do(testCtx(t), c)); got != tt.want {
					t.Errorf("code = %v, want %v", got, tt.want)
				}
			})
		}
	}
}

// startErr starts req and returns the error of the call or the stream.
func startErr(ctx context.Context, e *env, c codec, req *connect.Request[pb.StartRequest]) error {
	s, err := e.proc(c).Start(ctx, req)
	if err != nil {
		return err
	}
	for s.Receive() {
	}
	return s.Err()
}
