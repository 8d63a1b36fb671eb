package guest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/denhq/den/api/envd/process"
)

func TestReapOrphansLeavesOwnProcesses(t *testing.T) {
	e := newEnv(t)
	orphan, err := syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "orphan to become a zombie", func() bool {
		st, ok := readStat(orphan)
		return ok && st.state == 'Z'
	})
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
				n += e.agent.reapOrphans()
			}
		}
	}()
	client := e.proc(e.codecs()[1])
	for i := range 20 {
		stream, err := client.Start(testCtx(t), startReq("sh", "-c", "exit "+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		r := collect(t, stream)
		if r.end.GetExitCode() != int32(i) || r.end.Error != nil {
			t.Errorf("run %d: end %v; the reaper stole an owned exit status", i, r.end)
		}
	}
	close(stop)
	if n := <-done; n != 1 {
		t.Errorf("reaped %d orphans, want 1", n)
	}
	if _, ok := readStat(orphan); ok {
		t.Errorf("orphan %d still exists", orphan)
	}
}

func TestSlowSubscriberIsDropped(t *testing.T) {
	p := &proc{pid: 1, slow: time.Millisecond, subs: map[*subscriber]struct{}{}}
	slow, _ := p.subscribe()
	for range subscriberQueue + 1 {
		p.publish(dataEvent(outStdout, []byte("x")), false)
	}
	if !slow.dropped.Load() {
		t.Fatal("a subscriber that never reads was not dropped")
	}
	err := follow(testCtx(t), p, slow, time.Hour, func(*pb.ProcessEvent) error { return nil })
	if codeOf(toConnect(err)) != connect.CodeResourceExhausted {
		t.Errorf("follow after drop: %v, want resource_exhausted", err)
	}
}

func TestOutputDoesNotBlockWithoutReaders(t *testing.T) {
	e := newEnv(t)
	client := e.proc(e.codecs()[1])
	ctx, cancel := context.WithCancel(testCtx(t))
	stream, err := client.Start(ctx, startReq("sh", "-c", "head -c 100000000 /dev/zero; echo done >&2"))
	if err != nil {
		t.Fatal(err)
	}
	var r result
	readUntil(t, stream, &r, func(r *result) bool { return r.pid != 0 })
	cancel() // the only reader goes away; the process must still finish
	stream.Close()
	waitFor(t, "process to finish", func() bool {
		resp, err := client.List(testCtx(t), connect.NewRequest(&pb.ListRequest{}))
		return err == nil && len(resp.Msg.GetProcesses()) == 0
	})
}

func TestKeepaliveAndTimeout(t *testing.T) {
	e := newEnv(t)
	client := e.proc(e.codecs()[0])
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req := startReq("sleep", "1000")
	req.Header().Set("Keepalive-Ping-Interval", "1")
	stream, err := client.Start(ctx, req) // the deadline travels as Connect-Timeout-Ms
	if err != nil {
		t.Fatal(err)
	}
	var r result
	readUntil(t, stream, &r, func(r *result) bool { return r.keepalives > 0 })
	pid := int(r.pid)
	for stream.Receive() {
	}
	waitFor(t, "the timeout to kill the process", func() bool { return !alive(pid) })
}

func TestBlockedStdinWrite(t *testing.T) {
	e := newEnv(t)
	client := e.proc(e.codecs()[0])
	stdin := true
	req := connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "sleep", Args: []string{"1000"}}, Stdin: &stdin})
	stream, err := client.Start(testCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	var r result
	readUntil(t, stream, &r, func(r *result) bool { return r.pid != 0 })
	sel := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: r.pid}}
	in := &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: make([]byte, 4<<20)}} // more than a pipe holds
	ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
	defer cancel()
	_, err = client.SendInput(ctx, connect.NewRequest(&pb.SendInputRequest{Process: sel, Input: in}))
	if code := codeOf(err); code != connect.CodeDeadlineExceeded && code != connect.CodeCanceled {
		t.Errorf("SendInput to a full pipe: %v, want a deadline error", err)
	}
	go client.SendInput(testCtx(t), connect.NewRequest(&pb.SendInputRequest{Process: sel, Input: in}))
	if _, err := client.CloseStdin(testCtx(t), connect.NewRequest(&pb.CloseStdinRequest{Process: sel})); err != nil {
		t.Fatalf("CloseStdin while a write is blocked: %v", err)
	}
	if _, err := client.SendSignal(testCtx(t), connect.NewRequest(&pb.SendSignalRequest{Process: sel, Signal: pb.Signal_SIGNAL_SIGKILL})); err != nil {
		t.Fatal(err)
	}
	readUntil(t, stream, &r, func(r *result) bool { return r.end != nil })
}

// TestServerTimeoutIsDeadlineExceeded: when the request's Connect-Timeout-Ms
// passes, the stream ends with deadline_exceeded, which the e2b SDKs turn
// into their timeout errors (not internal). The request is sent by hand so
// the only deadline is the header's.
func TestServerTimeoutIsDeadlineExceeded(t *testing.T) {
	e := newEnv(t)
	body := []byte(`{"process":{"cmd":"sleep","args":["1000"]}}`)
	env := append([]byte{0, 0, 0, 0, byte(len(body))}, body...)
	req, err := http.NewRequest("POST", e.srv.URL+"/process.Process/Start", bytes.NewReader(env))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/connect+json")
	req.Header.Set("Connect-Timeout-Ms", "300")
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read stream: %v (the server did not end it at its timeout)", err)
	}
	if !bytes.Contains(out, []byte(`"code":"deadline_exceeded"`)) {
		t.Fatalf("stream after the server-side timeout ended with %q, want code deadline_exceeded", out)
	}
}
