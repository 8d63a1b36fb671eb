package server

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"

	pb "github.com/denhq/den/api/envd/process"
	"github.com/denhq/den/api/envd/process/processconnect"
	"github.com/denhq/den/api/rest"
)

// execResult is what a process.Process/Start stream delivered.
type execResult struct {
	Started        bool
	Stdout, Stderr string
	End            *pb.ProcessEvent_EndEvent
}

func (r *execResult) add(ev *pb.ProcessEvent) {
	switch {
	case ev.GetStart() != nil:
		r.Started = ev.GetStart().GetPid() != 0
	case ev.GetData() != nil:
		r.Stdout += string(ev.GetData().GetStdout())
		r.Stderr += string(ev.GetData().GetStderr())
	case ev.GetEnd() != nil:
		r.End = ev.GetEnd()
	}
}

var wantExec = execResult{
	Started: true, Stdout: "out\n", Stderr: "err\n",
	End: &pb.ProcessEvent_EndEvent{ExitCode: 3, Exited: true, Status: "exit status 3"},
}

const execScript = "echo out; echo err >&2; exit 3"

// TestProxyExec runs a process through the envd proxy with the generated
// Connect client, in both codecs the SDKs use.
func TestProxyExec(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"image":"busybox","name":"box"}`)
	codecs := []struct {
		name string
		opts []connect.ClientOption
	}{
		{"proto", nil},
		{"json", []connect.ClientOption{connect.WithProtoJSON()}},
	}
	for _, ref := range []string{sb.ID, "box"} {
		for _, c := range codecs {
			t.Run(c.name+"/"+ref, func(t *testing.T) {
				opts := append([]connect.ClientOption{connect.WithInterceptors(apiKeyInterceptor(e.keyA))}, c.opts...)
				client := processconnect.NewProcessClient(e.client, e.url+"/v1/sandboxes/"+ref+"/envd", opts...)
				stream, err := client.Start(testCtx(t), connect.NewRequest(&pb.StartRequest{
					Process: &pb.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", execScript}},
				}))
				if err != nil {
					t.Fatal(err)
				}
				defer stream.Close()
				var got execResult
				for stream.Receive() {
					got.add(stream.Msg().GetEvent())
				}
				if err := stream.Err(); err != nil {
					t.Fatalf("stream: %v", err)
				}
				if diff := cmp.Diff(wantExec, got, protocmp.Transform()); diff != "" {
					t.Errorf("exec (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestProxyExecCurl speaks the Connect server-streaming JSON protocol by
// hand, as docs/api.md tells curl users to: a request of one enveloped
// message, a response of enveloped messages ending with an end-of-stream
// envelope (flag 0x02).
func TestProxyExecCurl(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"image":"busybox"}`)
	msg := `{"process":{"cmd":"/bin/sh","args":["-c",` + jsonString(execScript) + `]}}`
	var body bytes.Buffer
	body.Write([]byte{0, 0, 0, 0, byte(len(msg))}) // flags, big-endian length (< 256)
	body.WriteString(msg)
	req, err := http.NewRequestWithContext(testCtx(t), "POST", e.url+"/v1/sandboxes/"+sb.ID+"/envd/process.Process/Start", &body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/connect+json")
	req.Header.Set("Authorization", "Bearer "+e.keyA)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var got execResult
	r := bufio.NewReader(resp.Body)
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			t.Fatalf("stream ended without an end-of-stream envelope: %v", err)
		}
		payload := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
		if _, err := io.ReadFull(r, payload); err != nil {
			t.Fatalf("read envelope: %v", err)
		}
		if hdr[0]&0x02 != 0 {
			if string(payload) != "{}" {
				t.Errorf("end-of-stream envelope = %s, want {}", payload)
			}
			break
		}
		var m pb.StartResponse
		if err := protojson.Unmarshal(payload, &m); err != nil {
			t.Fatalf("envelope %s: %v", payload, err)
		}
		got.add(m.GetEvent())
	}
	if diff := cmp.Diff(wantExec, got, protocmp.Transform()); diff != "" {
		t.Errorf("exec (-want +got):\n%s", diff)
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestProxyHTTP covers the plain-HTTP envd routes through the proxy: health,
// a unary Connect call in JSON, file upload and download, and a full disk.
func TestProxyHTTP(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"image":"busybox"}`)
	dir := t.TempDir()
	file := filepath.Join(dir, "hello.txt")
	base := "/v1/sandboxes/" + sb.ID + "/envd"
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		wantStatus  int
		wantBody    string // exact, or a JSON API error when wantErr is set
		wantErr     *rest.Error
	}{
		{name: "health", method: "GET", path: "/health", wantStatus: 204},
		{name: "unary JSON", method: "POST", path: "/process.Process/List", contentType: "application/json", body: "{}",
			wantStatus: 200, wantBody: "{}"},
		{name: "upload", method: "POST", path: "/files?path=" + file, contentType: "application/octet-stream", body: "hello\n",
			wantStatus: 200, wantBody: `[{"path":"` + file + `","name":"hello.txt","type":"file"}]` + "\n"},
		{name: "download", method: "GET", path: "/files?path=" + file, wantStatus: 200, wantBody: "hello\n"},
		{name: "download missing", method: "GET", path: "/files?path=" + dir + "/nope", wantStatus: 404,
			wantErr: &rest.Error{Code: "not_found", Message: "read file: open " + dir + "/nope: no such file or directory"}},
		{name: "upload past disk quota", method: "POST", path: "/files?path=" + dir + "/big", contentType: "application/octet-stream",
			body: strings.Repeat("x", stubDiskQuota+1), wantStatus: 507,
			wantErr: &rest.Error{Code: "insufficient_storage", Message: "write " + dir + "/big: no space left on device"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rd io.Reader
			if tt.body != "" {
				rd = strings.NewReader(tt.body)
			}
			req, err := http.NewRequest(tt.method, e.url+base+tt.path, rd)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-API-Key", e.keyA)
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != nil {
				checkAPIError(t, resp.StatusCode, b, tt.wantStatus, *tt.wantErr)
				return
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.wantStatus, b)
			}
			if diff := cmp.Diff(tt.wantBody, string(b)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "big")); !os.IsNotExist(err) {
		t.Errorf("rejected upload left a file: %v", err)
	}
}

// TestProxyStripsAPIKey checks that the den API key never reaches the guest
// agent, which runs inside the sandbox, while other headers (the guest's
// own Basic user) pass through.
func TestProxyStripsAPIKey(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"image":"busybox"}`)
	tests := []struct {
		name      string
		header    http.Header
		wantGuest http.Header // the auth headers the guest should see
	}{
		{"X-API-Key", http.Header{"X-Api-Key": {e.keyA}}, http.Header{}},
		{"Bearer", http.Header{"Authorization": {"Bearer " + e.keyA}}, http.Header{}},
		{"X-API-Key and Basic user", http.Header{"X-Api-Key": {e.keyA}, "Authorization": {"Basic dXNlcjo="}},
			http.Header{"Authorization": {"Basic dXNlcjo="}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest("GET", e.url+"/v1/sandboxes/"+sb.ID+"/envd/health", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header = tt.header
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("status %d, want 204", resp.StatusCode)
			}
			seen := e.node.lastGuestHeaders()
			got := http.Header{}
			for _, k := range []string{"Authorization", "X-Api-Key"} {
				if v := seen.Values(k); v != nil {
					got[k] = v
				}
			}
			if diff := cmp.Diff(tt.wantGuest, got); diff != "" {
				t.Errorf("auth headers at the guest (-want +got):\n%s", diff)
			}
		})
	}
}

// TestProxyGuestUnreachable checks the answer when the guest channel can't
// be dialled.
func TestProxyGuestUnreachable(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"image":"busybox"}`)
	e.node.setSock(filepath.Join(t.TempDir(), "absent.sock"))
	status, body := e.do("GET", "/v1/sandboxes/"+sb.ID+"/envd/health", e.keyA, "")
	var got rest.Error
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	prefix := "sandbox " + sb.ID + ": guest agent unreachable: "
	if status != http.StatusServiceUnavailable || got.Code != "unavailable" || !strings.HasPrefix(got.Message, prefix) ||
		!strings.Contains(got.Message, "absent.sock") {
		t.Errorf("got %d %+v, want 503 unavailable with a message starting %q and naming the socket", status, got, prefix)
	}
}
