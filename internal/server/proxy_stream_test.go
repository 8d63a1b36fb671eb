package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func connectMsg(flags byte, payload string) []byte {
	b := make([]byte, 5, 5+len(payload))
	b[0] = flags
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

// readConnectMsgs splits a Connect stream into its messages.
func readConnectMsgs(t *testing.T, data []byte) (flags []byte, payloads []string) {
	t.Helper()
	for len(data) > 0 {
		if len(data) < 5 {
			t.Fatalf("%d trailing bytes are not a message", len(data))
		}
		n := int(binary.BigEndian.Uint32(data[1:5]))
		if len(data) < 5+n {
			t.Fatalf("message of %d bytes truncated to %d", n, len(data)-5)
		}
		flags = append(flags, data[0])
		payloads = append(payloads, string(data[5:5+n]))
		data = data[5+n:]
	}
	return flags, payloads
}

func TestConnectStreamGuardPassesWholeStream(t *testing.T) {
	in := append(connectMsg(0, "one"), connectMsg(0, "two")...)
	in = append(in, connectMsg(connectFlagEndStream, "{}")...)
	g := &connectStreamGuard{body: io.NopCloser(bytes.NewReader(in)), lost: func() string {
		t.Fatal("lost called for a whole stream")
		return ""
	}}
	out, err := io.ReadAll(g)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, in) {
		t.Fatalf("stream changed: %q, want %q", out, in)
	}
}

func TestConnectStreamGuardEndsBrokenStream(t *testing.T) {
	for name, tail := range map[string][]byte{
		"mid-message": connectMsg(0, "half a message")[:9],
		"mid-header":  {0, 0},
		"no end":      nil,
	} {
		t.Run(name, func(t *testing.T) {
			in := append(connectMsg(0, "whole"), tail...)
			g := &connectStreamGuard{body: io.NopCloser(bytes.NewReader(in)), lost: func() string { return "sandbox x stopped: out of memory" }}
			out, err := io.ReadAll(g)
			if err != nil {
				t.Fatal(err)
			}
			flags, payloads := readConnectMsgs(t, out)
			if len(payloads) != 2 || payloads[0] != "whole" || flags[1] != connectFlagEndStream {
				t.Fatalf("messages %q flags %v, want the whole one then an end-stream", payloads, flags)
			}
			var end struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal([]byte(payloads[1]), &end); err != nil {
				t.Fatal(err)
			}
			if end.Error.Code != "unavailable" || end.Error.Message != "sandbox x stopped: out of memory" {
				t.Fatalf("end-stream error %+v", end.Error)
			}
		})
	}
}

// TestGuestProxyKeepsConnectionAfterStream: a Connect stream read to its
// end-stream message leaves the guest connection for the next request. A
// body closed before its HTTP end would take the connection with it, and
// every exec would dial into the sandbox again.
func TestGuestProxyKeepsConnectionAfterStream(t *testing.T) {
	guest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/connect+proto")
		_, _ = w.Write(connectMsg(0, "start"))
		w.(http.Flusher).Flush()
		_, _ = w.Write(connectMsg(0, "end"))
		_, _ = w.Write(connectMsg(connectFlagEndStream, "{}"))
		// The body's end comes in a write of its own, after the client
		// could have the whole stream (as from the guest agent).
		w.(http.Flusher).Flush()
		time.Sleep(10 * time.Millisecond)
	}))
	defer guest.Close()
	var dials atomic.Int32
	proxies := newGuestProxies(func(ctx context.Context, id string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, "tcp", guest.Listener.Addr().String())
	}, false, func(context.Context, string) string { return "lost" })
	for i := range 3 {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/process.Process/Start", strings.NewReader("x"))
		proxies.get("sb").ServeHTTP(rec, req)
		_, payloads := readConnectMsgs(t, rec.Body.Bytes())
		if len(payloads) != 3 || payloads[1] != "end" {
			t.Fatalf("request %d: messages %q", i, payloads)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("3 streams dialled the guest %d times, want 1 (the connection kept)", n)
	}
}
