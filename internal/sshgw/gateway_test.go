package sshgw

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/denhq/den/internal/guest"
)

// TestMain lets the test binary serve as the guest agent's SFTP helper
// (`den-guest sftp-server`): the agent of these tests runs its own
// executable for it.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == guest.SFTPServerCommand {
		if err := guest.ServeSFTP(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakeBackend is a Backend whose one sandbox is a real guest agent
// running on this host (processes run as the test's user), and whose
// port tunnels dial the host's loopback.
type fakeBackend struct {
	sock string // the agent's unix socket
	sb   Sandbox
	fp   string // the one authorised key's fingerprint

	mu     sync.Mutex
	active int // connections between Begin and end
	begins int
}

func (b *fakeBackend) Authorize(_ context.Context, user, fp string) (Sandbox, error) {
	if fp != b.fp || (user != b.sb.ID && user != b.sb.Name) {
		return Sandbox{}, errors.New("no")
	}
	return b.sb, nil
}

func (b *fakeBackend) Begin(context.Context, string) (func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.active++
	b.begins++
	return func() { b.mu.Lock(); b.active--; b.mu.Unlock() }, nil
}

func (b *fakeBackend) DialGuest(ctx context.Context, _ string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", b.sock)
}

func (b *fakeBackend) DialPort(ctx context.Context, _ string, port int) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
}

// testEnv is a gateway in front of a fakeBackend, and a key that may log in.
type testEnv struct {
	t      testing.TB
	addr   string
	be     *fakeBackend
	signer ssh.Signer
	hostPK ssh.PublicKey
}

// newTestEnv starts the gateway; opts change its Config.
func newTestEnv(t testing.TB, opts ...func(*Config)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	agent, err := guest.New(guest.Config{SelfPath: self, Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin", "DEN_BASE=1"}})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "guest.sock")
	gln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: agent.Handler()}
	go hs.Serve(gln)
	_, userKey, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(userKey)
	be := &fakeBackend{sock: sock, sb: Sandbox{ID: "sb-1", Name: "dev"}, fp: ssh.FingerprintSHA256(signer.PublicKey())}
	hostKey, err := LoadHostKey(filepath.Join(dir, "ssh", "host_ed25519_key"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{HostKey: hostKey, Backend: be}
	for _, o := range opts {
		o(&cfg)
	}
	gw, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gw.Serve(ln)
	t.Cleanup(func() {
		gw.Close()
		hs.Close()
		agent.Close()
	})
	return &testEnv{t: t, addr: ln.Addr().String(), be: be, signer: signer, hostPK: hostKey.PublicKey()}
}

// dial logs in as user with signer.
func (e *testEnv) dial(user string, auth ...ssh.AuthMethod) (*ssh.Client, error) {
	if auth == nil {
		auth = []ssh.AuthMethod{ssh.PublicKeys(e.signer)}
	}
	return ssh.Dial("tcp", e.addr, &ssh.ClientConfig{User: user, Auth: auth,
		HostKeyCallback: ssh.FixedHostKey(e.hostPK), Timeout: 30 * time.Second})
}

func (e *testEnv) client() *ssh.Client {
	e.t.Helper()
	c, err := e.dial("sb-1")
	if err != nil {
		e.t.Fatalf("login: %v", err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

func TestAuthRefusals(t *testing.T) {
	e := newTestEnv(t)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherSigner, _ := ssh.NewSignerFromKey(other)
	tests := []struct {
		name string
		user string
		auth []ssh.AuthMethod
	}{
		{"unknown key", "sb-1", []ssh.AuthMethod{ssh.PublicKeys(otherSigner)}},
		{"unknown sandbox", "sb-404", nil},
		{"password", "sb-1", []ssh.AuthMethod{ssh.Password("secret")}},
		{"keyboard-interactive", "sb-1", []ssh.AuthMethod{ssh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) {
			return []string{"x"}, nil
		})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.dial(tt.user, tt.auth...)
			if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
				t.Fatalf("login: %v, want refused", err)
			}
		})
	}
	for _, user := range []string{"sb-1", "dev"} { // ID and name both log in
		c, err := e.dial(user)
		if err != nil {
			t.Fatalf("login as %s: %v", user, err)
		}
		c.Close()
	}
}

// run runs cmd in a session with the given setup and returns its output
// and the session's error (an *ssh.ExitError for a non-zero status).
func run(t *testing.T, c *ssh.Client, cmd string, setup func(*ssh.Session)) (stdout, stderr string, err error) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var o, e bytes.Buffer
	s.Stdout, s.Stderr = &o, &e
	if setup != nil {
		setup(s)
	}
	err = s.Run(cmd)
	return o.String(), e.String(), err
}

func TestExec(t *testing.T) {
	e := newTestEnv(t)
	c := e.client()
	out, errOut, err := run(t, c, "echo out; echo err >&2; exit 3", nil)
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 3 {
		t.Fatalf("exit: %v, want status 3", err)
	}
	if out != "out\n" || errOut != "err\n" {
		t.Fatalf("stdout %q stderr %q", out, errOut)
	}
	// stdin is closed at the client's EOF: cat ends.
	out, _, err = run(t, c, "cat; echo done", func(s *ssh.Session) { s.Stdin = strings.NewReader("hello\n") })
	if err != nil || out != "hello\ndone\n" {
		t.Fatalf("cat: %q, %v", out, err)
	}
	// A process killed by a signal ends with exit-signal.
	_, _, err = run(t, c, "kill -TERM $$", nil)
	if !errors.As(err, &ee) || ee.Signal() != "TERM" {
		t.Fatalf("killed: %v, want signal TERM", err)
	}
	// The sandbox is active while logged in (and once more per open
	// channel), and no longer once the client leaves.
	active := func(want int) func() bool {
		return func() bool { e.be.mu.Lock(); defer e.be.mu.Unlock(); return e.be.active == want }
	}
	waitFor(t, active(1))
	c.Close()
	waitFor(t, active(0))
}

func TestEnvAndPTY(t *testing.T) {
	e := newTestEnv(t)
	c := e.client()
	out, _, err := run(t, c, `printf '%s|%s' "$LANG_X" "$OTHER"`, func(s *ssh.Session) {
		if err := s.Setenv("LANG_X", "hello world"); err != nil {
			t.Fatalf("setenv: %v", err)
		}
		if err := s.Setenv("BAD=NAME", "x"); err == nil {
			t.Fatal("setenv of a name with = succeeded")
		}
	})
	if err != nil || out != "hello world|" {
		t.Fatalf("env: %q, %v", out, err)
	}

	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err != nil {
		t.Fatalf("pty-req: %v", err)
	}
	stdin, _ := s.StdinPipe()
	var mu sync.Mutex
	var buf bytes.Buffer
	s.Stdout = writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return buf.Write(p) })
	if err := s.Start(`stty size; echo "term=$TERM"; read x; stty size; exit 7`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return strings.Contains(buf.String(), "term=xterm") })
	// With a reply (Session.WindowChange asks none) the resize is known
	// done before the input that follows.
	if ok, err := s.SendRequest("window-change", true, ssh.Marshal(windowChange{Cols: 132, Rows: 50})); !ok || err != nil {
		t.Fatalf("window-change: %v %v", ok, err)
	}
	io.WriteString(stdin, "go\r")
	err = s.Wait()
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 7 {
		t.Fatalf("pty exit: %v", err)
	}
	got := buf.String()
	if !strings.Contains(got, "24 80") || !strings.Contains(got, "50 132") {
		t.Fatalf("pty output %q: want sizes 24 80 then 50 132", got)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// waitFor polls cond until it holds or 30 s passed.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDirectTCPIP(t *testing.T) {
	e := newTestEnv(t)
	c := e.client()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		b, _ := io.ReadAll(conn)
		conn.Write(bytes.ToUpper(b))
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	conn, err := c.Dial("tcp", fmt.Sprintf("localhost:%d", port))
	if err != nil {
		t.Fatalf("direct-tcpip: %v", err)
	}
	io.WriteString(conn, "ping")
	conn.(interface{ CloseWrite() error }).CloseWrite()
	got, _ := io.ReadAll(conn)
	conn.Close()
	if string(got) != "PING" {
		t.Fatalf("round trip %q, want PING", got)
	}
	// Another host is refused with the reason.
	_, err = c.Dial("tcp", "example.com:80")
	if err == nil || !strings.Contains(err.Error(), `is not this sandbox: forward to localhost, 127.0.0.1, ::1 or sb-1`) {
		t.Fatalf("forward to example.com: %v", err)
	}
}

func TestTCPIPForward(t *testing.T) {
	e := newTestEnv(t)
	c := e.client()
	ln, err := c.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("tcpip-forward: %v", err)
	}
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "from client")
	}()
	// A process "in the sandbox" connects to the forwarded port.
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(conn)
	conn.Close()
	if string(got) != "from client" {
		t.Fatalf("forwarded %q", got)
	}
	ln.Close() // cancel-tcpip-forward: the listener goes away
	waitFor(t, func() bool {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			c.Close()
		}
		return err != nil
	})
}

func TestSFTP(t *testing.T) {
	e := newTestEnv(t)
	c := e.client()
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatalf("sftp: %v", err)
	}
	defer sc.Close()
	path := filepath.Join(t.TempDir(), "f")
	data := bytes.Repeat([]byte("den"), 1<<20)
	f, err := sc.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("uploaded file: %d bytes, %v", len(got), err)
	}
	if _, err := sc.Stat("/no/such/file"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat of a missing file: %v", err)
	}
}

func TestMalformedRequests(t *testing.T) {
	e := newTestEnv(t)
	c := e.client()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, typ := range []string{"pty-req", "env", "exec", "subsystem", "window-change", "signal", "x11-req", "auth-agent-req@openssh.com"} {
		ok, err := s.SendRequest(typ, true, []byte{0xff, 0xff})
		if err != nil || ok {
			t.Fatalf("%s with a bad payload: ok=%v err=%v, want refused", typ, ok, err)
		}
	}
	if ok, _ := s.SendRequest("subsystem", true, ssh.Marshal(struct{ Name string }{"nope"})); ok {
		t.Fatal("unknown subsystem accepted")
	}
	// A bad direct-tcpip payload and an unknown channel type are refused.
	if _, _, err := c.OpenChannel("direct-tcpip", []byte{1}); err == nil {
		t.Fatal("malformed direct-tcpip accepted")
	}
	if _, _, err := c.OpenChannel("x11", nil); err == nil {
		t.Fatal("x11 channel accepted")
	}
	if ok, _, _ := c.SendRequest("tcpip-forward", true, []byte{1, 2}); ok {
		t.Fatal("malformed tcpip-forward accepted")
	}
	if ok, _, _ := c.SendRequest("tcpip-forward", true, ssh.Marshal(forwardRequest{Addr: "0.0.0.0", Port: 0})); ok {
		t.Fatal("tcpip-forward on 0.0.0.0 accepted")
	}
	// The connection still works.
	if out, _, err := run(t, c, "echo ok", nil); err != nil || out != "ok\n" {
		t.Fatalf("after bad requests: %q, %v", out, err)
	}
}

func TestHostKeyPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ssh", "host_ed25519_key")
	k1, err := LoadHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1.PublicKey().Marshal(), k2.PublicKey().Marshal()) {
		t.Fatal("host key changed across loads")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key file: %v, %v", fi.Mode(), err)
	}
	os.WriteFile(path, []byte("garbage"), 0o600)
	if _, err := LoadHostKey(path); err == nil || !strings.Contains(err.Error(), "parse ssh host key") {
		t.Fatalf("garbage host key: %v", err)
	}
}

func TestSignalAndHangup(t *testing.T) {
	e := newTestEnv(t)
	c := e.client()
	// A signal request reaches the process; it ends with exit-signal.
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := s.StdoutPipe()
	if err := s.Start("echo started; exec sleep 1000"); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, len("started\n"))
	if _, err := io.ReadFull(out, line); err != nil {
		t.Fatal(err)
	}
	if err := s.Signal(ssh.SIGINT); err != nil {
		t.Fatal(err)
	}
	var ee *ssh.ExitError
	if err := s.Wait(); !errors.As(err, &ee) || ee.Signal() != "INT" {
		t.Fatalf("after SIGINT: %v, want exit-signal INT", err)
	}
	s.Close()

	// Closing the channel kills what still runs in it.
	s, err = c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, _ = s.StdoutPipe()
	if err := s.Start("echo $$; exec sleep 1000"); err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Fscan(out, &pid); err != nil || pid == 0 {
		t.Fatalf("pid: %d, %v", pid, err)
	}
	s.Close()
	waitFor(t, func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		return err != nil
	})
}

func TestParseSignalStatus(t *testing.T) {
	tests := []struct {
		status string
		sig    syscall.Signal
		core   bool
		ok     bool
	}{
		{"signal: terminated", syscall.SIGTERM, false, true},
		{"signal: segmentation fault (core dumped)", syscall.SIGSEGV, true, true},
		{"signal: user defined signal 1", syscall.SIGUSR1, false, true},
		{"exit status 1", 0, false, false},
		{"signal: nonsense", 0, false, false},
	}
	for _, tt := range tests {
		sig, core, ok := parseSignalStatus(tt.status)
		if sig != tt.sig || core != tt.core || ok != tt.ok {
			t.Errorf("%q: %v %v %v, want %v %v %v", tt.status, sig, core, ok, tt.sig, tt.core, tt.ok)
		}
	}
}

// TestKeepalive checks that the gateway asks an idle client whether it is
// alive and drops one that never answers.
func TestKeepalive(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.KeepaliveInterval, c.KeepaliveCountMax = 20*time.Millisecond, 2 })
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cc, chans, reqs, err := ssh.NewClientConn(nc, e.addr, &ssh.ClientConfig{User: "sb-1",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(e.signer)}, HostKeyCallback: ssh.FixedHostKey(e.hostPK)})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for nch := range chans {
			nch.Reject(ssh.Prohibited, "no")
		}
	}()
	// The client reads the gateway's requests and never answers them.
	got := make(chan string, 16)
	go func() {
		for r := range reqs {
			select {
			case got <- r.Type:
			default:
			}
		}
		close(got)
	}()
	if typ := <-got; typ != "keepalive@openssh.com" {
		t.Fatalf("gateway sent %q, want keepalive@openssh.com", typ)
	}
	if err := cc.Wait(); err == nil {
		t.Fatal("connection ended without an error")
	}
	e.be.mu.Lock()
	defer e.be.mu.Unlock()
	if e.be.begins != 1 {
		t.Fatalf("begins %d", e.be.begins)
	}
}
