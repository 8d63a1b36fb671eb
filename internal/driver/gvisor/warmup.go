package gvisor

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"

	"github.com/denhq/den/api/envd/process"
	"github.com/denhq/den/api/envd/process/processconnect"
)

// DefaultWarmupScript runs, in a fresh spare, the programs a first command
// most often needs, so their pages are already in the sandbox's caches when
// the spare is claimed (measured here: the first `node -v` in a sandbox
// takes 355 ms, the next 119 ms). It writes nothing: no files (python -B),
// no history, no output kept.
const DefaultWarmupScript = `command -v bash >/dev/null 2>&1 && bash -lc true
command -v node >/dev/null 2>&1 && node -v >/dev/null 2>&1
command -v python3 >/dev/null 2>&1 && python3 -B -c pass >/dev/null 2>&1
true`

// warmupTimeout bounds a warm-up; a slow one only delays the refill.
const warmupTimeout = 20 * time.Second

// warmSpare runs Config.WarmupScript in spare sp through its guest agent
// and waits for it to end. It is best effort: an error leaves the spare
// usable, only colder.
func (d *Driver) warmSpare(ctx context.Context, sp spare) error {
	if d.cfg.WarmupScript == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, warmupTimeout)
	defer cancel()
	tr := &http.Transport{
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return dialUnix(ctx, sp.p.socket()) },
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	client := processconnect.NewProcessClient(&http.Client{Transport: tr}, "http://guest")
	stream, err := client.Start(ctx, connect.NewRequest(&process.StartRequest{
		// sh through PATH, as first commands name it: the agent caches
		// where it found it.
		Process: &process.ProcessConfig{Cmd: "sh", Args: []string{"-c", d.cfg.WarmupScript}},
	}))
	if err != nil {
		return fmt.Errorf("warm up spare %s: %w", sp.id, err)
	}
	defer stream.Close()
	for stream.Receive() {
		if stream.Msg().GetEvent().GetEnd() != nil {
			return nil
		}
	}
	if err := stream.Err(); err != nil {
		return fmt.Errorf("warm up spare %s: %w", sp.id, err)
	}
	return fmt.Errorf("warm up spare %s: the stream ended without an end event", sp.id)
}
