package node

import (
	"context"
	"slices"
	"testing"

	"connectrpc.com/connect"

	"github.com/denhq/den/api/envd/process"
	"github.com/denhq/den/api/envd/process/processconnect"
	"github.com/denhq/den/api/rest"
)

// commandImages are test images with a command (driver.Image.Command).
var commandImages = map[string][]string{
	"cmd":    {"/bin/sh", "-c", "echo main-out; exec sleep 600"},
	"badcmd": {"/nonexistent/den-test-binary"},
}

// processTags lists the tags of the processes running in sandbox id.
func (e *env) processTags(id string) []string {
	e.t.Helper()
	client := processconnect.NewProcessClient(e.node.guestHTTP(id), guestURL)
	resp, err := client.List(context.Background(), connect.NewRequest(&process.ListRequest{}))
	if err != nil {
		e.t.Fatalf("list processes of %s: %v", id, err)
	}
	var tags []string
	for _, p := range resp.Msg.GetProcesses() {
		tags = append(tags, p.GetTag())
	}
	return tags
}

func TestStartRunsImageCommandAsMain(t *testing.T) {
	e := newEnv(t)
	e.record("a", rest.StateStarting, "cmd")
	if _, err := e.node.Start(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if tags := e.processTags("a"); !slices.Equal(tags, []string{mainTag}) {
		t.Fatalf("processes after Start = %q, want only %q", tags, mainTag)
	}
	// The main process is still there for a client that connects later.
	client := processconnect.NewProcessClient(e.node.guestHTTP("a"), guestURL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.Connect(ctx, connect.NewRequest(&process.ConnectRequest{
		Process: &process.ProcessSelector{Selector: &process.ProcessSelector_Tag{Tag: mainTag}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if !stream.Receive() || stream.Msg().GetEvent().GetStart() == nil {
		t.Fatalf("connect to the main process: no start event (%v)", stream.Err())
	}
	if err := e.node.Destroy(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
}

func TestStartSurvivesImageCommandThatCannotStart(t *testing.T) {
	e := newEnv(t)
	e.record("a", rest.StateStarting, "badcmd")
	sb, err := e.node.Start(context.Background(), "a")
	if err != nil || sb.State != rest.StateRunning {
		t.Fatalf("Start = %+v, %v; want running", sb, err)
	}
	if tags := e.processTags("a"); len(tags) != 0 {
		t.Fatalf("processes after a failed main start = %q, want none", tags)
	}
}
