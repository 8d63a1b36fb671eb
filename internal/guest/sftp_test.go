package guest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pkg/sftp"
)

// TestMain lets the test binary serve as `den-guest sftp-server`: the
// agents of these tests run their own executable for GET /sftp.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == SFTPServerCommand {
		if err := ServeSFTP(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// upgradeConn sends GET path as an upgrade to proto on a new connection
// to e's agent and returns the connection after the 101, with the
// response.
func (e *env) upgradeConn(path, proto string) (net.Conn, *bufio.Reader, *http.Response) {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: guest\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", path, proto)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return conn, br, resp
}

func TestSFTPRoute(t *testing.T) {
	e := newEnv(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e.agent.cfg.SelfPath = self
	conn, br, resp := e.upgradeConn("/sftp", SFTPUpgrade)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("GET /sftp: %s", resp.Status)
	}
	c, err := sftp.NewClientPipe(br, conn)
	if err != nil {
		t.Fatalf("sftp client: %v", err)
	}
	defer c.Close()
	// Relative paths are the user's home.
	wd, err := c.Getwd()
	if err != nil || wd != e.home {
		t.Fatalf("working directory %q, %v; want %s", wd, err, e.home)
	}
	data := bytes.Repeat([]byte("0123456789"), 100_000)
	f, err := c.Create("up.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got, err := os.ReadFile(filepath.Join(e.home, "up.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file written over sftp: %d bytes, %v", len(got), err)
	}
	if _, err := c.Stat("missing"); !os.IsNotExist(err) {
		t.Fatalf("stat missing: %v", err)
	}

	// Not an upgrade: 400 naming what is needed.
	r, err := http.Get(e.srv.URL + "/sftp")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "GET /sftp needs HTTP/1.1 with Connection: Upgrade and Upgrade: den-sftp") {
		t.Fatalf("plain GET /sftp: %s %s", r.Status, body)
	}
}

func TestListenRoute(t *testing.T) {
	e := newEnv(t)
	conn, br, resp := e.upgradeConn("/ports/0/listen", ListenUpgrade)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("GET /ports/0/listen: %s", resp.Status)
	}
	port, err := strconv.Atoi(resp.Header.Get(ListenPortHeader))
	if err != nil || port == 0 {
		t.Fatalf("bound port %q", resp.Header.Get(ListenPortHeader))
	}
	// A process of the sandbox connects; the host fetches the connection.
	client, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	id, peer, _ := strings.Cut(strings.TrimSpace(line), " ")
	if peer != client.LocalAddr().String() {
		t.Fatalf("announced peer %q, want %s", peer, client.LocalAddr())
	}
	acc, abr, resp := e.upgradeConn("/accepted/"+id, PortUpgrade)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("GET /accepted: %s", resp.Status)
	}
	io.WriteString(client, "ping")
	got := make([]byte, 4)
	if _, err := io.ReadFull(abr, got); err != nil || string(got) != "ping" {
		t.Fatalf("tunnel read %q, %v", got, err)
	}
	io.WriteString(acc, "pong")
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "pong" {
		t.Fatalf("client read %q, %v", got, err)
	}
	// An ID is fetched once.
	_, _, resp = e.upgradeConn("/accepted/"+id, PortUpgrade)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("second fetch: %s", resp.Status)
	}
	// Closing the listen stream closes the listener.
	conn.Close()
	waitFor(t, "the listener to close", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	_, _, resp = e.upgradeConn("/ports/99999/listen", ListenUpgrade)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("listen on port 99999: %s", resp.Status)
	}
}
