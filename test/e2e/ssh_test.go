package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	den "github.com/denhq/den/sdk/go"
)

// sshEnv is a den up with its SSH gateway, a registered key and an
// unregistered one, and the real OpenSSH client.
type sshEnv struct {
	t          *testing.T
	in         *instance
	dir        string // keys, known_hosts, local files
	port       string // the gateway's port on 127.0.0.1
	key, other string // private key files
}

func newSSHEnv(t *testing.T) *sshEnv {
	t.Helper()
	for _, bin := range []string{"ssh", "scp", "sftp", "ssh-keygen"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("the OpenSSH client (%s) is not installed: run scripts/deps.sh", bin)
		}
	}
	in := startDen(t, "")
	vars, err := den.ReadEnvFile(filepath.Join(in.dataDir, "env"))
	if err != nil || vars["DEN_SSH"] == "" {
		t.Fatalf("den up's env file has no DEN_SSH: %v %v", vars, err)
	}
	_, port, _ := net.SplitHostPort(vars["DEN_SSH"])
	e := &sshEnv{t: t, in: in, dir: t.TempDir(), port: port}
	e.key, e.other = filepath.Join(e.dir, "id"), filepath.Join(e.dir, "other")
	for _, k := range []string{e.key, e.other} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e@test", "-f", k).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	return e
}

// opts are the options every OpenSSH command of the test gets.
func (e *sshEnv) opts(key string) []string {
	return []string{"-F", "/dev/null", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=accept-new", "-o", "UserKnownHostsFile=" + filepath.Join(e.dir, "known_hosts"),
		"-o", "LogLevel=ERROR"}
}

// sshArgs are the arguments of ssh to sandbox id with the registered key.
func (e *sshEnv) sshArgs(id string, extra ...string) []string {
	args := append(e.opts(e.key), "-p", e.port)
	args = append(args, extra...)
	return append(args, id+"@127.0.0.1")
}

// run runs an OpenSSH program and returns its stdout, stderr and exit code.
func (e *sshEnv) run(stdin io.Reader, name string, args ...string) (string, string, int) {
	e.t.Helper()
	cmd := exec.Command(name, args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("%s: %v", name, err)
	}
	return out.String(), errb.String(), code
}

// ssh runs command in sandbox id and fails the test unless it exits 0.
func (e *sshEnv) ssh(id, command string) string {
	e.t.Helper()
	out, errOut, code := e.run(nil, "ssh", append(e.sshArgs(id), command)...)
	if code != 0 {
		e.t.Fatalf("ssh %s %q: exit %d\nstdout: %s\nstderr: %s\nden log:\n%s", id, command, code, out, errOut, tail(e.in.log.String(), 3000))
	}
	return out
}

// TestSSH drives the real OpenSSH client (ssh, scp, sftp, rsync) against
// den up's SSH gateway.
func TestSSH(t *testing.T) {
	e := newSSHEnv(t)
	in := e.in
	out := in.mustDen("ssh-key", "add", "--name", "e2e", e.key+".pub")
	if !strings.Contains(out, "e2e SHA256:") {
		t.Fatalf("den ssh-key add printed %q", out)
	}
	var keys []struct{ Name, Fingerprint string }
	if err := json.Unmarshal([]byte(in.mustDen("ssh-key", "ls", "--json")), &keys); err != nil || len(keys) != 1 || keys[0].Name != "e2e" {
		t.Fatalf("den ssh-key ls --json: %v %v", keys, err)
	}
	if res := in.den(strings.NewReader("not a key"), "ssh-key", "add", "-"); res.code == 0 || !strings.Contains(res.stderr, "public_key is not an SSH public key") {
		t.Fatalf("add of garbage: exit %d, stderr %q", res.code, res.stderr)
	}
	id := strings.TrimSpace(in.mustDen("create", testImage, "--timeout", "900", "--name", "sshbox"))

	t.Run("exec exit code", func(t *testing.T) {
		out, errOut, code := e.run(nil, "ssh", append(e.sshArgs(id), "echo hi; echo oops >&2; exit 42")...)
		if code != 42 || out != "hi\n" || errOut != "oops\n" {
			t.Fatalf("exit %d stdout %q stderr %q", code, out, errOut)
		}
		// The name logs in too.
		if got := e.ssh("sshbox", "echo by-name"); got != "by-name\n" {
			t.Fatalf("by name: %q", got)
		}
	})
	t.Run("shell with tty", func(t *testing.T) {
		out, errOut, code := e.run(strings.NewReader("echo $((6*7)) $TERM; tty; exit 5\n"), "ssh", e.sshArgs(id, "-tt")...)
		if code != 5 || !strings.Contains(out, "42 ") || !strings.Contains(out, "/dev/pts/") {
			t.Fatalf("ssh -tt: exit %d\nstdout %q\nstderr %q", code, out, errOut)
		}
	})
	t.Run("SetEnv", func(t *testing.T) {
		out, _, code := e.run(nil, "ssh", append(e.sshArgs(id, "-o", "SetEnv=DEN_E2E=from-client"), "echo $DEN_E2E")...)
		if code != 0 || out != "from-client\n" {
			t.Fatalf("SetEnv: exit %d, %q", code, out)
		}
	})
	t.Run("scp -r both ways", func(t *testing.T) {
		src := filepath.Join(e.dir, "tree")
		writeTree(t, src)
		if o, eo, code := e.run(nil, "scp", append(e.opts(e.key), "-P", e.port, "-r", src, id+"@127.0.0.1:/tmp/up")...); code != 0 {
			t.Fatalf("scp up: %d %s %s", code, o, eo)
		}
		if got := e.ssh(id, "cat /tmp/up/a.txt /tmp/up/sub/b.txt"); got != "alpha\nbeta\n" {
			t.Fatalf("uploaded tree: %q", got)
		}
		dst := filepath.Join(e.dir, "down")
		if o, eo, code := e.run(nil, "scp", append(e.opts(e.key), "-P", e.port, "-r", id+"@127.0.0.1:/tmp/up", dst)...); code != 0 {
			t.Fatalf("scp down: %d %s %s", code, o, eo)
		}
		if b, err := os.ReadFile(filepath.Join(dst, "sub", "b.txt")); err != nil || string(b) != "beta\n" {
			t.Fatalf("downloaded tree: %q %v", b, err)
		}
	})
	t.Run("sftp -b", func(t *testing.T) {
		local := filepath.Join(e.dir, "s.txt")
		os.WriteFile(local, []byte("sftp data\n"), 0o644)
		batch := fmt.Sprintf("mkdir /tmp/sf\nput %s /tmp/sf/x\nls /tmp/sf\nget /tmp/sf/x %s.back\n", local, local)
		out, eo, code := e.run(strings.NewReader(batch), "sftp", append(e.opts(e.key), "-P", e.port, "-b", "-", id+"@127.0.0.1")...)
		if code != 0 || !strings.Contains(out, "/tmp/sf/x") {
			t.Fatalf("sftp -b: %d\n%s\n%s", code, out, eo)
		}
		if b, _ := os.ReadFile(local + ".back"); string(b) != "sftp data\n" {
			t.Fatalf("sftp get: %q", b)
		}
	})
	t.Run("rsync", func(t *testing.T) { testRsync(t, e, id) })
	t.Run("ssh -L", func(t *testing.T) {
		e.ssh(id, "mkdir -p /www && echo 'hello over -L' > /www/index.html && httpd -p 8080 -h /www")
		lport := freePort(t)
		cmd := exec.Command("ssh", e.sshArgs(id, "-N", "-o", "ExitOnForwardFailure=yes", "-L", lport+":localhost:8080")...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		body := poll(t, func() (string, bool) {
			resp, err := http.Get("http://127.0.0.1:" + lport + "/")
			if err != nil {
				return err.Error(), false
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return string(b), resp.StatusCode == 200
		})
		if body != "hello over -L\n" {
			t.Fatalf("GET through -L: %q", body)
		}
	})
	t.Run("ssh -R", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello over -R") }))
		defer srv.Close()
		_, hport, _ := net.SplitHostPort(srv.Listener.Addr().String())
		cmd := exec.Command("ssh", e.sshArgs(id, "-N", "-o", "ExitOnForwardFailure=yes", "-R", "9090:127.0.0.1:"+hport)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		body := poll(t, func() (string, bool) {
			out, _, code := e.run(nil, "ssh", append(e.sshArgs(id), "wget -qO- http://127.0.0.1:9090/")...)
			return out, code == 0
		})
		if body != "hello over -R" {
			t.Fatalf("GET through -R: %q", body)
		}
	})
	t.Run("login resumes a suspended sandbox", func(t *testing.T) {
		in.mustDen("suspend", id)
		if got := e.ssh(id, "echo awake"); got != "awake\n" {
			t.Fatalf("after suspend: %q", got)
		}
		var sb struct{ State string }
		if err := json.Unmarshal([]byte(in.mustDen("get", id, "--json")), &sb); err != nil || sb.State != "running" {
			t.Fatalf("state after an ssh login: %+v %v", sb, err)
		}
	})
	t.Run("unregistered key refused", func(t *testing.T) {
		args := append(e.opts(e.other), "-p", e.port, id+"@127.0.0.1", "true")
		_, errOut, code := e.run(nil, "ssh", args...)
		if code != 255 || !strings.Contains(errOut, "Permission denied (publickey)") {
			t.Fatalf("other key: exit %d, %q", code, errOut)
		}
		// An unknown sandbox is the same refusal.
		_, errOut, code = e.run(nil, "ssh", append(e.opts(e.key), "-p", e.port, "sb-nope@127.0.0.1", "true")...)
		if code != 255 || !strings.Contains(errOut, "Permission denied (publickey)") {
			t.Fatalf("unknown sandbox: exit %d, %q", code, errOut)
		}
	})
	t.Run("den ssh and ssh-config", func(t *testing.T) {
		res := in.den(nil, "ssh", "--data-dir", in.dataDir, "-i", e.key, id, "--", "echo", "via-den-ssh")
		if res.code != 0 || res.stdout != "via-den-ssh\n" {
			t.Fatalf("den ssh: exit %d %q %q", res.code, res.stdout, res.stderr)
		}
		cfg := in.mustDen("ssh-config", "--data-dir", in.dataDir, id)
		for _, want := range []string{"Host den-" + id, "HostName 127.0.0.1", "Port " + e.port, "User " + id} {
			if !strings.Contains(cfg, want) {
				t.Fatalf("ssh-config lacks %q:\n%s", want, cfg)
			}
		}
	})
}

// TestSSHLargeSCP copies 500 MB each way with scp (SFTP under OpenSSH 9)
// and checks the sha256 on both sides; it logs the time of each, the
// figure in docs/benchmarks.md.
func TestSSHLargeSCP(t *testing.T) {
	e := newSSHEnv(t)
	e.in.mustDen("ssh-key", "add", e.key+".pub")
	id := strings.TrimSpace(e.in.mustDen("create", testImage, "--timeout", "900", "--memory", "2048", "--disk", "4096"))
	const size = 500 << 20
	src := filepath.Join(e.dir, "big")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want := hex.EncodeToString(h.Sum(nil))

	start := time.Now()
	if o, eo, code := e.run(nil, "scp", append(e.opts(e.key), "-P", e.port, src, id+"@127.0.0.1:/tmp/big")...); code != 0 {
		t.Fatalf("scp up: %d %s %s", code, o, eo)
	}
	up := time.Since(start)
	if got := strings.Fields(e.ssh(id, "sha256sum /tmp/big")); len(got) == 0 || got[0] != want {
		t.Fatalf("sha256 in the sandbox %v, want %s", got, want)
	}
	dst := filepath.Join(e.dir, "big.back")
	start = time.Now()
	if o, eo, code := e.run(nil, "scp", append(e.opts(e.key), "-P", e.port, id+"@127.0.0.1:/tmp/big", dst)...); code != 0 {
		t.Fatalf("scp down: %d %s %s", code, o, eo)
	}
	down := time.Since(start)
	if got := fileSHA256(t, dst); got != want {
		t.Fatalf("sha256 of the download %s, want %s", got, want)
	}
	t.Logf("scp 500 MiB: up %v (%.0f MiB/s), down %v (%.0f MiB/s)", up.Round(time.Millisecond), 500/up.Seconds(), down.Round(time.Millisecond), 500/down.Seconds())
}

// testRsync runs rsync over the gateway. The busybox test image has no
// rsync, so the host's rsync and its shared libraries are copied into
// the sandbox with scp and run through their own dynamic loader
// (--rsync-path); the Debian base image has rsync itself.
func testRsync(t *testing.T, e *sshEnv, id string) {
	rsync, err := exec.LookPath("rsync")
	if err != nil {
		t.Skip("rsync is not installed on the host: run scripts/deps.sh")
	}
	files := []string{rsync}
	out, err := exec.Command("ldd", rsync).Output()
	if err != nil {
		t.Fatalf("ldd rsync: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(l) {
			if strings.HasPrefix(f, "/") {
				files = append(files, f)
			}
		}
	}
	e.ssh(id, "mkdir -p /tmp/rsync")
	if o, eo, code := e.run(nil, "scp", append(append(e.opts(e.key), "-P", e.port), append(files, id+"@127.0.0.1:/tmp/rsync/")...)...); code != 0 {
		t.Fatalf("scp rsync: %d %s %s", code, o, eo)
	}
	e.ssh(id, `printf '#!/bin/sh\nexec /tmp/rsync/ld-linux-x86-64.so.2 --library-path /tmp/rsync /tmp/rsync/rsync "$@"\n' > /tmp/rsync/run && chmod +x /tmp/rsync/run`)
	src := filepath.Join(e.dir, "rtree")
	writeTree(t, src)
	sshCmd := "ssh " + strings.Join(append(e.opts(e.key), "-p", e.port), " ")
	for _, args := range [][]string{
		{"-a", "-e", sshCmd, "--rsync-path=/tmp/rsync/run", src + "/", id + "@127.0.0.1:/tmp/rs/"},
		{"-a", "-e", sshCmd, "--rsync-path=/tmp/rsync/run", id + "@127.0.0.1:/tmp/rs/", filepath.Join(e.dir, "rback") + "/"},
	} {
		if o, eo, code := e.run(nil, "rsync", args...); code != 0 {
			t.Fatalf("rsync %v: %d\n%s\n%s", args, code, o, eo)
		}
	}
	if b, err := os.ReadFile(filepath.Join(e.dir, "rback", "sub", "b.txt")); err != nil || string(b) != "beta\n" {
		t.Fatalf("rsync round trip: %q %v", b, err)
	}
}

// writeTree writes a small directory tree: a.txt, sub/b.txt.
func writeTree(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("alpha\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "sub", "b.txt"), []byte("beta\n"), 0o644)
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

// freePort returns a port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}

// poll calls f until it reports ok or 60 s passed, and returns its last
// value.
func poll(t *testing.T, f func() (string, bool)) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		v, ok := f()
		if ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("not reached in 60s; last: %q", v)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
