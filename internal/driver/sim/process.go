package sim

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	pb "github.com/denhq/den/api/envd/process"
	"github.com/denhq/den/api/envd/process/processconnect"
)

// processService runs simulated processes (see the package comment).
type processService struct {
	processconnect.UnimplementedProcessHandler
}

var pids atomic.Uint32

// maxSleep bounds a simulated sleep.
const maxSleep = time.Hour

// Start runs the command line and streams its events as envd does: start,
// output, end.
func (processService) Start(ctx context.Context, req *connect.Request[pb.StartRequest], stream *connect.ServerStream[pb.StartResponse]) error {
	cfg := req.Msg.GetProcess()
	if cfg.GetCmd() == "" {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("process.cmd is required"))
	}
	send := func(ev *pb.ProcessEvent) error { return stream.Send(&pb.StartResponse{Event: ev}) }
	if err := send(&pb.ProcessEvent{Event: &pb.ProcessEvent_Start{Start: &pb.ProcessEvent_StartEvent{Pid: pids.Add(1)}}}); err != nil {
		return err
	}
	code := run(ctx, script(cfg.GetCmd(), cfg.GetArgs()), func(stderr bool, b []byte) error {
		data := &pb.ProcessEvent_DataEvent{Output: &pb.ProcessEvent_DataEvent_Stdout{Stdout: b}}
		if stderr {
			data.Output = &pb.ProcessEvent_DataEvent_Stderr{Stderr: b}
		}
		return send(&pb.ProcessEvent{Event: &pb.ProcessEvent_Data{Data: data}})
	})
	end := &pb.ProcessEvent_EndEvent{ExitCode: int32(code), Exited: code >= 0, Status: fmt.Sprintf("exit status %d", code)}
	if code < 0 {
		end.Status = "signal: killed"
	}
	return send(&pb.ProcessEvent{Event: &pb.ProcessEvent_End{End: end}})
}

// script is what a command line runs: a shell's -c argument, or the
// command and its arguments as one line.
func script(cmd string, args []string) string {
	base := cmd[strings.LastIndex(cmd, "/")+1:]
	if (base == "sh" || base == "bash") && len(args) >= 2 && (args[len(args)-2] == "-c" || args[len(args)-2] == "-lc") {
		return args[len(args)-1]
	}
	return strings.Join(append([]string{cmd}, args...), " ")
}

// run interprets s and returns its exit status (-1: killed, ctx ended).
func run(ctx context.Context, s string, out func(stderr bool, b []byte) error) int {
	code := 0
	for _, line := range strings.Split(s, ";") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "echo":
			words, toErr := f[1:], false
			if n := len(words); n > 0 && words[n-1] == ">&2" {
				words, toErr = words[:n-1], true
			}
			if err := out(toErr, []byte(unquote(strings.Join(words, " "))+"\n")); err != nil {
				return -1
			}
			code = 0
		case "true", ":":
			code = 0
		case "false":
			code = 1
		case "exit":
			if len(f) < 2 {
				return code
			}
			n, err := strconv.Atoi(f[1])
			if err != nil {
				out(true, []byte("sim: exit: "+f[1]+": numeric argument required\n"))
				return 2
			}
			return n & 0xff
		case "sleep":
			d, err := strconv.ParseFloat(strings.TrimSuffix(f[len(f)-1], "s"), 64)
			if err != nil || d < 0 {
				out(true, []byte("sim: sleep: invalid time interval\n"))
				return 1
			}
			t := time.NewTimer(min(time.Duration(d*float64(time.Second)), maxSleep))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return -1
			}
			code = 0
		default:
			out(true, []byte("sim: "+f[0]+": command not simulated\n"))
			code = 127
		}
	}
	return code
}

// unquote drops the shell quotes of simple words.
func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}
