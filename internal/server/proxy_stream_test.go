package server

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"testing"
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
