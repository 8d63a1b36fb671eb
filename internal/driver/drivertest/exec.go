package drivertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"connectrpc.com/connect"

	"github.com/denhq/den/api/envd/process"
	"github.com/denhq/den/api/envd/process/processconnect"
)

// GuestURL is the base URL of the guest agent on a DialGuest connection.
const GuestURL = "http://guest"

// GuestDialer reaches a sandbox's guest agent: a driver, or anything
// that routes to one (a cluster's fleet).
type GuestDialer interface {
	DialGuest(ctx context.Context, id string) (net.Conn, error)
}

// GuestHTTPClient returns an HTTP/1.1 client whose every connection is a
// DialGuest stream to sandbox id. Requests go to GuestURL.
func GuestHTTPClient(d GuestDialer, id string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialGuest(ctx, id)
		},
		DisableKeepAlives: true,
	}}
}

// ProcessClient returns an envd process client for sandbox id.
func ProcessClient(d GuestDialer, id string) processconnect.ProcessClient {
	return processconnect.NewProcessClient(GuestHTTPClient(d, id), GuestURL)
}

// Result is the outcome of a command run with Exec.
type Result struct {
	Stdout   string
	Stderr   string
	ExitCode int
	// Exited is false when the process ended by a signal.
	Exited bool
	// Status is the guest's description of the end ("exit status 1", ...).
	Status string
}

// Exec runs argv in sandbox id through the guest agent and collects its
// output and exit code. A non-zero exit is a Result, not an error; errors
// are about the channel (dial, protocol, a stream that ended early).
func Exec(ctx context.Context, d GuestDialer, id string, argv ...string) (Result, error) {
	if len(argv) == 0 {
		return Result{}, errors.New("exec: empty command")
	}
	return ExecProcess(ctx, d, id, &process.ProcessConfig{Cmd: argv[0], Args: argv[1:]})
}

// Shell runs script with /bin/sh -c in sandbox id (see Exec).
func Shell(ctx context.Context, d GuestDialer, id, script string) (Result, error) {
	return Exec(ctx, d, id, "/bin/sh", "-c", script)
}

// ExecProcess is Exec with a full process configuration (env, cwd).
func ExecProcess(ctx context.Context, d GuestDialer, id string, cfg *process.ProcessConfig) (Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := ProcessClient(d, id).Start(ctx, connect.NewRequest(&process.StartRequest{Process: cfg}))
	if err != nil {
		return Result{}, fmt.Errorf("exec %s in sandbox %s: %w", cfg.GetCmd(), id, err)
	}
	defer stream.Close()
	var res Result
	var stdout, stderr bytes.Buffer
	ended := false
	for stream.Receive() {
		ev := stream.Msg().GetEvent()
		if data := ev.GetData(); data != nil {
			stdout.Write(data.GetStdout())
			stderr.Write(data.GetStderr())
		}
		if end := ev.GetEnd(); end != nil {
			res.ExitCode, res.Exited, res.Status = int(end.GetExitCode()), end.GetExited(), end.GetStatus()
			ended = true
		}
	}
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	if err := stream.Err(); err != nil {
		return res, fmt.Errorf("exec %s in sandbox %s: %w", cfg.GetCmd(), id, err)
	}
	if !ended {
		return res, fmt.Errorf("exec %s in sandbox %s: stream ended without an end event", cfg.GetCmd(), id)
	}
	return res, nil
}
