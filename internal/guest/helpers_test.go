package guest

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/denhq/den/api/envd/filesystem/filesystemconnect"
	pb "github.com/denhq/den/api/envd/process"
	"github.com/denhq/den/api/envd/process/processconnect"
)

// env is one agent served over httptest with HTTP/1.1 and h2c, a home
// directory for the test user, and clients for both codecs.
type env struct {
	t     *testing.T
	agent *Agent
	srv   *httptest.Server
	home  string
}

// codec is one way to talk to the agent: JSON over HTTP/1.1, as the e2b
// SDKs do, or protobuf over h2c.
type codec struct {
	name   string
	client *http.Client
	opts   []connect.ClientOption
}

// newEnv starts an agent whose passwd file has "tester" (the euid of the
// test, home a temp dir, the default user) and "nobody".
func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	passwd := fmt.Sprintf("# test users\ntester:x:%d:%d::%s:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\n",
		os.Geteuid(), os.Getegid(), home)
	group := fmt.Sprintf("tester:x:%d:\nnogroup:x:65534:\nextra:x:4242:tester\n", os.Getegid())
	users := newUserDB(filepath.Join(dir, "passwd"), filepath.Join(dir, "group"), newFSGen())
	writeFile(t, users.passwd.path, passwd)
	writeFile(t, users.group.path, group)
	a := newAgent(Config{DefaultUser: "tester", Env: []string{"PATH=" + os.Getenv("PATH"), "DEN_BASE=base"}}, users)
	a.slowSubscriber = 200 * time.Millisecond
	srv := httptest.NewUnstartedServer(a.Handler())
	srv.Config.Protocols = protocols(true, true)
	srv.Start()
	t.Cleanup(func() {
		srv.CloseClientConnections()
		a.Close()
		srv.Close()
	})
	return &env{t: t, agent: a, srv: srv, home: home}
}

func protocols(h1, h2c bool) *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(h1)
	p.SetUnencryptedHTTP2(h2c)
	return p
}

// codecs returns the JSON/HTTP1 and protobuf/h2c ways to reach e.
func (e *env) codecs() []codec {
	h1 := &http.Client{Transport: &http.Transport{Protocols: protocols(true, false)}}
	h2 := &http.Client{Transport: &http.Transport{Protocols: protocols(false, true)}}
	e.t.Cleanup(h1.CloseIdleConnections)
	e.t.Cleanup(h2.CloseIdleConnections)
	return []codec{
		{name: "json-http1", client: h1, opts: []connect.ClientOption{connect.WithProtoJSON()}},
		{name: "proto-h2c", client: h2},
	}
}

func (e *env) proc(c codec) processconnect.ProcessClient {
	return processconnect.NewProcessClient(c.client, e.srv.URL, c.opts...)
}

func (e *env) fs(c codec) filesystemconnect.FilesystemClient {
	return filesystemconnect.NewFilesystemClient(c.client, e.srv.URL, c.opts...)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// asUser sets the header that makes a request act as user.
func asUser[T any](req *connect.Request[T], user string) *connect.Request[T] {
	req.Header().Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":")))
	return req
}

// result is what a process stream delivered.
type result struct {
	pid            uint32
	stdout, stderr string
	pty            string
	end            *pb.ProcessEvent_EndEvent
	keepalives     int
}

// collect reads a Start or Connect stream to its end.
func collect[T interface{ GetEvent() *pb.ProcessEvent }](t *testing.T, s interface {
	Receive() bool
	Msg() T
	Err() error
}) result {
	t.Helper()
	var r result
	for s.Receive() {
		r.add(s.Msg().GetEvent())
	}
	if err := s.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	return r
}

func (r *result) add(ev *pb.ProcessEvent) {
	switch {
	case ev.GetStart() != nil:
		r.pid = ev.GetStart().GetPid()
	case ev.GetData() != nil:
		d := ev.GetData()
		r.stdout += string(d.GetStdout())
		r.stderr += string(d.GetStderr())
		r.pty += string(d.GetPty())
	case ev.GetEnd() != nil:
		r.end = ev.GetEnd()
	case ev.GetKeepalive() != nil:
		r.keepalives++
	}
}

// readUntil receives events into r until cond holds or the stream ends.
func readUntil[T interface{ GetEvent() *pb.ProcessEvent }](t *testing.T, s interface {
	Receive() bool
	Msg() T
	Err() error
}, r *result, cond func(*result) bool) {
	t.Helper()
	for !cond(r) {
		if !s.Receive() {
			t.Fatalf("stream ended before condition held (err %v); got %+v", s.Err(), *r)
		}
		r.add(s.Msg().GetEvent())
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// codeOf returns the Connect code of err, or 0 for nil.
func codeOf(err error) connect.Code {
	if err == nil {
		return 0
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Code()
	}
	return connect.CodeUnknown
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func alive(pid int) bool {
	st, ok := readStat(pid)
	return ok && st.state != 'Z'
}

func startReq(cmd string, args ...string) *connect.Request[pb.StartRequest] {
	return connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: cmd, Args: args}})
}

func trimLines(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }
