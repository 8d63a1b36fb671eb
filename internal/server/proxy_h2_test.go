package server

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"
)

// TestHTTP2ResponseWaitsForRequestEnd: a handler that answers a whole
// HTTP/2 request before the client ended its stream (as a Connect stream
// does when the process ends quickly) does not return until the request's
// end comes, so the server ends the stream normally instead of resetting it
// (RST_STREAM NO_ERROR, which httpx fails the call on).
func TestHTTP2ResponseWaitsForRequestEnd(t *testing.T) {
	answered := make(chan struct{})
	guest := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("whole response"))
		w.(http.Flusher).Flush()
		close(answered)
	})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveWaitingForRequestEnd(guest, w, r)
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fr := &h2Frames{conn: conn}
	fr.write(t, []byte(h2Preface))
	fr.frame(t, h2Settings, 0, 0, nil)
	var block []byte
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/process.Process/Start"}, {":authority", "den"}, {"content-type", "application/connect+json"}} {
		block = hpackLiteral(block, f[0], f[1])
	}
	fr.frame(t, h2Headers, h2FlagEndHeaders, 1, block)
	fr.frame(t, h2Data, 0, 1, []byte("request"))
	select {
	case <-answered:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler never answered")
	}

	// readUntil reads frames until deadline and reports whether stream 1
	// was reset or ended by the server.
	readUntil := func(deadline time.Time, stopAtEnd bool) (reset, ended bool) {
		_ = conn.SetReadDeadline(deadline)
		for {
			typ, flags, stream, err := fr.read()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return reset, ended
			}
			if err != nil {
				t.Fatalf("read frame: %v", err)
			}
			switch {
			case typ == h2Settings && flags&h2FlagAck == 0:
				fr.frame(t, h2Settings, h2FlagAck, 0, nil)
			case typ == h2RSTStream && stream == 1:
				reset = true
			case (typ == h2Data || typ == h2Headers) && stream == 1 && flags&h2FlagEndStream != 0:
				ended = true
			}
			if stopAtEnd && (reset || ended) {
				return reset, ended
			}
		}
	}
	if reset, ended := readUntil(time.Now().Add(300*time.Millisecond), false); reset || ended {
		t.Fatalf("before the request ended: stream reset %v, ended %v; want the response held open", reset, ended)
	}
	fr.frame(t, h2Data, h2FlagEndStream, 1, nil)
	reset, ended := readUntil(time.Now().Add(5*time.Second), true)
	if reset || !ended {
		t.Fatalf("after the request ended: stream reset %v, ended %v; want it ended, not reset", reset, ended)
	}
}

// A few HTTP/2 frames by hand (RFC 9113 §4, §6; header blocks as HPACK
// literals, RFC 7541 §6.2.2), enough to end a request's stream late.
const (
	h2Preface        = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	h2Data           = 0x0
	h2Headers        = 0x1
	h2RSTStream      = 0x3
	h2Settings       = 0x4
	h2FlagEndStream  = 0x1
	h2FlagAck        = 0x1
	h2FlagEndHeaders = 0x4
)

type h2Frames struct{ conn net.Conn }

func (f *h2Frames) write(t *testing.T, b []byte) {
	t.Helper()
	if _, err := f.conn.Write(b); err != nil {
		t.Fatal(err)
	}
}

func (f *h2Frames) frame(t *testing.T, typ, flags byte, stream uint32, payload []byte) {
	t.Helper()
	hdr := make([]byte, 9, 9+len(payload))
	hdr[0], hdr[1], hdr[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	hdr[3], hdr[4] = typ, flags
	binary.BigEndian.PutUint32(hdr[5:], stream)
	f.write(t, append(hdr, payload...))
}

// read reads one frame and returns its header, discarding its payload.
func (f *h2Frames) read() (typ, flags byte, stream uint32, err error) {
	var hdr [9]byte
	if _, err := io.ReadFull(f.conn, hdr[:]); err != nil {
		return 0, 0, 0, err
	}
	n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
	if _, err := io.CopyN(io.Discard, f.conn, int64(n)); err != nil {
		return 0, 0, 0, err
	}
	return hdr[3], hdr[4], binary.BigEndian.Uint32(hdr[5:]) & 0x7fffffff, nil
}

// hpackLiteral appends a literal header field without indexing, with a
// new name (names and values under 127 bytes).
func hpackLiteral(b []byte, name, value string) []byte {
	b = append(b, 0x00, byte(len(name)))
	b = append(b, name...)
	b = append(b, byte(len(value)))
	return append(b, value...)
}
