package qemu

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/denhq/den/api/envd/process"
	"github.com/denhq/den/api/envd/process/processconnect"
)

// TestChannelConcurrentStreams runs commands on several streams of one
// VM's agent channel at once: each gets its own output, and `uname -r` is
// the guest kernel's release, not the host's.
func TestChannelConcurrentStreams(t *testing.T) {
	d, spec := newTestDriver(t)
	spec.ID = "vm-channel"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := d.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Destroy(context.Background(), spec.ID) })
	k, _ := d.cfg.Kernels.Get("")
	client := processconnect.NewProcessClient(&http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialGuest(ctx, spec.ID) },
	}}, "http://guest")
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			script := "uname -r; echo stream-" + string(rune('a'+i))
			stream, err := client.Start(ctx, connect.NewRequest(&process.StartRequest{Process: &process.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", script}}}))
			if err != nil {
				t.Errorf("exec %d: %v", i, err)
				return
			}
			defer stream.Close()
			var out strings.Builder
			for stream.Receive() {
				if d := stream.Msg().GetEvent().GetData(); d != nil {
					out.Write(d.GetStdout())
				}
			}
			if want := k.Version + "\nstream-" + string(rune('a'+i)) + "\n"; out.String() != want {
				t.Errorf("exec %d: output %q, want %q", i, out.String(), want)
			}
		})
	}
	wg.Wait()
}
