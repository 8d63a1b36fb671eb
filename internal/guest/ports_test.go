package guest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

// startEchoServer listens on 127.0.0.1 as a server in the sandbox would:
// it reads until EOF, then answers "got: " and what it read, and closes.
// Its answer arriving after the client's half-close shows that the
// tunnel passes a half-close on.
func startEchoServer(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				fmt.Fprintf(c, "got: %s", b)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().(*net.TCPAddr).Port
}

// freePort returns a loopback port that nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// portAgent is an agent and the ways the host reaches it.
type portAgent struct {
	agent *Agent
	dials map[string]func() (net.Conn, error)
}

// newPortAgent serves one agent over TCP, over a Server on a unix socket
// (tracked connections, as for gVisor) and over yamux streams (as for a
// microVM's virtio-serial port).
func newPortAgent(t *testing.T) *portAgent {
	t.Helper()
	a := newAgent(Config{}, userDB{})
	t.Cleanup(func() { a.Close() })
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcpSrv := &http.Server{Handler: a.Handler()}
	go tcpSrv.Serve(tcp)
	t.Cleanup(func() { tcpSrv.Close() })

	sock := filepath.Join(t.TempDir(), "agent.sock")
	sv, err := NewServer(a.Handler(), []string{"unix:" + sock}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sv.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sv.Stop(time.Second) })

	hostEnd, guestEnd := net.Pipe()
	guestSess, err := yamux.Server(guestEnd, YamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	hostSess, err := yamux.Client(hostEnd, YamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	vmSrv := &http.Server{Handler: a.Handler()}
	go vmSrv.Serve(guestSess)
	t.Cleanup(func() { vmSrv.Close(); hostSess.Close(); guestSess.Close() })

	return &portAgent{agent: a, dials: map[string]func() (net.Conn, error){
		"tcp":   func() (net.Conn, error) { return net.Dial("tcp", tcp.Addr().String()) },
		"unix":  func() (net.Conn, error) { return net.Dial("unix", sock) },
		"yamux": func() (net.Conn, error) { return hostSess.Open() },
	}}
}

// upgradePort sends GET /ports/{port} as an upgrade on c and returns the
// response and the reader of what follows it.
func upgradePort(t *testing.T, c net.Conn, port string, header string) (*http.Response, *bufio.Reader) {
	t.Helper()
	if header == "" {
		header = "Connection: Upgrade\r\nUpgrade: " + PortUpgrade + "\r\n"
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET /ports/%s HTTP/1.1\r\nHost: guest\r\n%s\r\n", port, header); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp, br
}

// halfClose closes the write side of a host connection.
func halfClose(t *testing.T, c net.Conn) {
	t.Helper()
	var err error
	switch c := c.(type) {
	case interface{ CloseWrite() error }:
		err = c.CloseWrite()
	case *yamux.Stream:
		err = c.Close()
	default:
		t.Fatalf("%T cannot half-close", c)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestPortTunnelHalfClose(t *testing.T) {
	pa := newPortAgent(t)
	port := fmt.Sprint(startEchoServer(t))
	for name, dial := range pa.dials {
		t.Run(name, func(t *testing.T) {
			c, err := dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			resp, br := upgradePort(t, c, port, "")
			if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != PortUpgrade {
				t.Fatalf("got %s %v, want 101 with Upgrade: %s", resp.Status, resp.Header, PortUpgrade)
			}
			if _, err := io.WriteString(c, "ping from "+name); err != nil {
				t.Fatal(err)
			}
			halfClose(t, c)
			got, err := io.ReadAll(br)
			if err != nil {
				t.Fatalf("read the answer: %v", err)
			}
			if want := "got: ping from " + name; string(got) != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func TestPortErrors(t *testing.T) {
	pa := newPortAgent(t)
	free := freePort(t)
	tests := []struct {
		name, port, header string
		status             int
		code, msg          string
	}{
		{"nothing listens", fmt.Sprint(free), "", 502, "unavailable", fmt.Sprintf("nothing listens on port %d in the sandbox: dial tcp 127.0.0.1:%d: connect: connection refused", free, free)},
		{"port 0", "0", "", 400, "invalid_argument", `invalid port "0": want a number from 1 to 65535`},
		{"port too big", "65536", "", 400, "invalid_argument", `invalid port "65536": want a number from 1 to 65535`},
		{"not a number", "http", "", 400, "invalid_argument", `invalid port "http": want a number from 1 to 65535`},
		{"no upgrade", "8080", "X-Nothing: 1\r\n", 400, "invalid_argument", "GET /ports/8080 needs HTTP/1.1 with Connection: Upgrade and Upgrade: den-tcp"},
		{"other upgrade", "8080", "Connection: Upgrade\r\nUpgrade: websocket\r\n", 400, "invalid_argument", "GET /ports/8080 needs HTTP/1.1 with Connection: Upgrade and Upgrade: den-tcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := pa.dials["unix"]()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			resp, _ := upgradePort(t, c, tt.port, tt.header)
			defer resp.Body.Close()
			var got apiError
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatalf("%s: decode: %v", resp.Status, err)
			}
			want := apiError{Code: tt.code, Message: tt.msg}
			if resp.StatusCode != tt.status || got != want {
				t.Errorf("got %d %+v, want %d %+v", resp.StatusCode, got, tt.status, want)
			}
		})
	}
}

// TestPortTunnelEndsWithAgent checks that Close of the agent ends an open
// tunnel: its goroutines belong to the agent.
func TestPortTunnelEndsWithAgent(t *testing.T) {
	pa := newPortAgent(t)
	port := fmt.Sprint(startEchoServer(t))
	c, err := pa.dials["tcp"]()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, br := upgradePort(t, c, port, "")
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("got %s, want 101", resp.Status)
	}
	closed := make(chan struct{})
	go func() { pa.agent.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close of the agent did not return with a tunnel open")
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) && !strings.Contains(fmt.Sprint(err), "reset") {
		t.Errorf("read from a tunnel of a closed agent: %v, want EOF", err)
	}
}
