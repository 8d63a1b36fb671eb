package e2e

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	den "github.com/denhq/den/sdk/go"
)

// wsEcho is a WebSocket echo server in Python's standard library: it
// answers the handshake and sends back every text or binary frame.
const wsEcho = `
import socket, hashlib, base64, threading
def handle(c):
    data = b''
    while b'\r\n\r\n' not in data:
        chunk = c.recv(4096)
        if not chunk:
            return
        data += chunk
    key = [l.split(b':', 1)[1].strip() for l in data.split(b'\r\n') if l.lower().startswith(b'sec-websocket-key:')][0]
    acc = base64.b64encode(hashlib.sha1(key + b'258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest())
    c.sendall(b'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ' + acc + b'\r\n\r\n')
    buf = b''
    def need(n):
        nonlocal buf
        while len(buf) < n:
            chunk = c.recv(4096)
            if not chunk:
                raise EOFError
            buf += chunk
        out, buf = buf[:n], buf[n:]
        return out
    try:
        while True:
            b0, b1 = need(2)
            op, ln = b0 & 15, b1 & 127
            if ln == 126:
                ln = int.from_bytes(need(2), 'big')
            mask = need(4) if b1 & 128 else b'\0\0\0\0'
            p = bytes(x ^ mask[i % 4] for i, x in enumerate(need(ln)))
            if op == 8:
                c.sendall(b'\x88\x00')
                return
            hdr = bytes([0x80 | op]) + (bytes([ln]) if ln < 126 else bytes([126]) + ln.to_bytes(2, 'big'))
            c.sendall(hdr + p)
    except EOFError:
        pass
    finally:
        c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 8765))
s.listen(16)
while True:
    c, _ = s.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
`

// testPythonServers starts python3 -m http.server and a WebSocket echo
// server in sandbox id (an image with python3) and reaches both through
// their URLs: a page, and a message echoed back over a WebSocket.
func testPythonServers(t *testing.T, in *instance, id string) {
	in.mustDen("exec", id, "--", "sh", "-c", "mkdir -p /tmp/site && echo 'served by python' > /tmp/site/index.html")
	c, err := den.NewClient(den.WithURL(in.url), den.WithAPIKey(in.key))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	for _, args := range [][]string{{"-m", "http.server", "8000", "--directory", "/tmp/site"}, {"-c", wsEcho}} {
		go func() {
			defer func() { done <- struct{}{} }()
			c.Sandbox(id).Exec(ctx, den.ExecOptions{Cmd: "python3", Args: args})
		}()
	}
	t.Cleanup(func() { cancel(); <-done; <-done })

	u, header := portURL(t, in, id, "8000")
	var got portResponse
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if got = getPort(t, u, header); got.status == http.StatusOK {
			break
		}
	}
	if got.status != http.StatusOK || got.body != "served by python\n" {
		t.Fatalf("python3 -m http.server through %s: HTTP %d %q", u, got.status, got.body)
	}
	if got := getPort(t, u, ""); got.status != http.StatusUnauthorized {
		t.Errorf("private port without the token: HTTP %d", got.status)
	}

	wsURL, _ := portURL(t, in, id, "8765")
	var msg string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if msg, err = wsRoundTrip(wsURL, header, "hello over a websocket"); err == nil {
			break
		}
	}
	if err != nil || msg != "hello over a websocket" {
		t.Fatalf("WebSocket echo through %s: %q, %v", wsURL, msg, err)
	}
}

// wsRoundTrip opens a WebSocket at rawURL (its host name in Host, to the
// listener's loopback address) with header, sends text and returns the
// text frame that comes back.
func wsRoundTrip(rawURL, header, text string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", err
	}
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+u.Port(), 5*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET / HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + header + "\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return "", err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(resp.Body)
		return "", &wsError{resp.Status + ": " + strings.TrimSpace(string(body))}
	}
	mask := []byte{1, 2, 3, 4}
	frame := []byte{0x81, 0x80 | byte(len(text))}
	frame = append(frame, mask...)
	for i := range len(text) {
		frame = append(frame, text[i]^mask[i%4])
	}
	if _, err := conn.Write(frame); err != nil {
		return "", err
	}
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return "", err
	}
	if hdr[0] != 0x81 || hdr[1]&0x80 != 0 || int(hdr[1]) >= 126 {
		return "", &wsError{"unexpected frame header " + string(bytes.ToValidUTF8(hdr, nil))}
	}
	payload := make([]byte, hdr[1])
	if _, err := io.ReadFull(br, payload); err != nil {
		return "", err
	}
	return string(payload), nil
}

type wsError struct{ msg string }

func (e *wsError) Error() string { return "websocket: " + e.msg }
