package nodelink

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/internal/errdefs"
)

// pair returns an agent end and a server end over a loopback TCP pair.
func pair(t *testing.T, agentMux, serverMux *Mux) (*Session, *Session) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := Client(c, agentMux, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Server(<-accepted, serverMux, Options{Context: WithPeer(context.Background(), "node-a")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); s.Close() })
	return a, s
}

type echo struct {
	Text string `json:"text"`
}

func TestCallsBothWays(t *testing.T) {
	am, sm := NewMux(), NewMux()
	am.HandleCall("agent.upper", func(_ context.Context, req json.RawMessage) (any, error) {
		var e echo
		if err := json.Unmarshal(req, &e); err != nil {
			return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "bad echo")
		}
		return echo{Text: strings.ToUpper(e.Text)}, nil
	})
	sm.HandleCall("server.missing", func(ctx context.Context, _ json.RawMessage) (any, error) {
		return nil, errdefs.New(errdefs.NotFound, "sandbox sb-1 not found (asked by %s)", Peer(ctx))
	})
	a, s := pair(t, am, sm)
	var got echo
	if err := s.Call(context.Background(), "agent.upper", echo{Text: "hi"}, &got); err != nil || got.Text != "HI" {
		t.Fatalf("server → agent call: %+v %v", got, err)
	}
	err := a.Call(context.Background(), "server.missing", nil, nil)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "sb-1 not found (asked by node-a)") {
		t.Fatalf("agent → server call: %v, want NotFound with the message", err)
	}
	if err := a.Call(context.Background(), "server.nothing", nil, nil); !errdefs.IsNotFound(err) {
		t.Fatalf("unknown method: %v, want NotFound", err)
	}
}

func TestCancelReachesHandler(t *testing.T) {
	am, sm := NewMux(), NewMux()
	cancelled := make(chan struct{})
	am.HandleCall("agent.slow", func(ctx context.Context, _ json.RawMessage) (any, error) {
		<-ctx.Done()
		close(cancelled)
		return nil, ctx.Err()
	})
	_, s := pair(t, am, sm)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	if err := s.Call(ctx, "agent.slow", nil, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context did not end when the caller gave up")
	}
}

func TestByteStream(t *testing.T) {
	am, sm := NewMux(), NewMux()
	am.HandleStream("agent.echo", func(_ context.Context, req json.RawMessage, st *Stream) {
		var e echo
		json.Unmarshal(req, &e)
		if e.Text == "no" {
			st.Refuse(errdefs.New(errdefs.PermissionDenied, "refused"))
			return
		}
		c, err := st.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	})
	_, s := pair(t, am, sm)
	if _, err := s.Open(context.Background(), "agent.echo", echo{Text: "no"}); !errdefs.Is(err, errdefs.PermissionDenied) {
		t.Fatalf("refused stream: %v", err)
	}
	c, err := s.Open(context.Background(), "agent.echo", echo{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// More than a yamux window each way, to see flow control work.
	payload := strings.Repeat("0123456789abcdef", 1<<19) // 8 MiB
	go io.WriteString(c, payload)
	buf := make([]byte, len(payload))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != payload {
		t.Fatalf("echoed %d bytes, err %v", len(buf), err)
	}
}

func TestBrokenLinkIsUnavailable(t *testing.T) {
	a, s := pair(t, NewMux(), NewMux())
	a.Close()
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the server end did not see the agent close")
	}
	if err := s.Call(context.Background(), "agent.any", nil, nil); !errdefs.Is(err, errdefs.Unavailable) {
		t.Fatalf("call on a closed link: %v, want Unavailable", err)
	}
}

func TestOversizedFrameRefused(t *testing.T) {
	am := NewMux()
	am.HandleCall("agent.big", func(context.Context, json.RawMessage) (any, error) { return nil, nil })
	_, s := pair(t, am, NewMux())
	big := strings.Repeat("x", MaxFrame)
	if err := s.Call(context.Background(), "agent.big", echo{Text: big}, nil); !errdefs.Is(err, errdefs.TooLarge) {
		t.Fatalf("oversized request: %v", err)
	}
	// The session still works.
	if err := s.Call(context.Background(), "agent.big", nil, nil); err != nil {
		t.Fatalf("after an oversized frame: %v", err)
	}
}
