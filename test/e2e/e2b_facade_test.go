package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/denhq/den/api/envd/process"
	"github.com/denhq/den/api/envd/process/processconnect"
)

// e2bEnvFile reads the E2B_* lines of den up's env file.
func e2bEnvFile(t *testing.T, dataDir string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dataDir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && strings.HasPrefix(k, "E2B_") {
			env[k] = v
		}
	}
	return env
}

// e2bEnvdHeaders routes every Connect call to one sandbox's envd, as the
// e2b SDKs do with E2B_SANDBOX_URL.
type e2bEnvdHeaders struct{ id, token string }

func (h e2bEnvdHeaders) set(hd http.Header) {
	hd.Set("E2b-Sandbox-Id", h.id)
	hd.Set("E2b-Sandbox-Port", "49983")
	hd.Set("X-Access-Token", h.token)
}

func (h e2bEnvdHeaders) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		h.set(req.Header())
		return next(ctx, req)
	}
}

func (h e2bEnvdHeaders) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		h.set(conn.RequestHeader())
		return conn
	}
}

func (h e2bEnvdHeaders) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// TestE2BFacadeRoundTrip checks den up's E2B lines and a create + command
// round trip through plain HTTP with the e2b key, and that a restart keeps
// the key.
func TestE2BFacadeRoundTrip(t *testing.T) {
	den := startDen(t, "")
	env := e2bEnvFile(t, den.dataDir)
	if !regexp.MustCompile(`^e2b_[0-9a-f]{40}$`).MatchString(env["E2B_API_KEY"]) ||
		env["E2B_API_URL"] != den.url || !regexp.MustCompile(`^http://127\.0\.0\.1:\d+$`).MatchString(env["E2B_SANDBOX_URL"]) {
		t.Fatalf("E2B lines: %v (DEN_URL %s)", env, den.url)
	}
	req, _ := http.NewRequest("POST", env["E2B_API_URL"]+"/v2/sandboxes",
		strings.NewReader(`{"templateID":"busybox","envVars":{"GREETING":"hi"},"timeout":120}`))
	req.Header.Set("X-API-Key", env["E2B_API_KEY"])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var sb struct{ SandboxID, EnvdAccessToken string }
	err = json.NewDecoder(resp.Body).Decode(&sb)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: HTTP %d, %v", resp.StatusCode, err)
	}
	client := processconnect.NewProcessClient(http.DefaultClient, env["E2B_SANDBOX_URL"],
		connect.WithProtoJSON(), connect.WithInterceptors(e2bEnvdHeaders{sb.SandboxID, sb.EnvdAccessToken}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := client.Start(ctx, connect.NewRequest(&pb.StartRequest{
		Process: &pb.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", `echo "$GREETING $(id -un)"; exit 7`}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	var out string
	var end *pb.ProcessEvent_EndEvent
	for stream.Receive() {
		ev := stream.Msg().GetEvent()
		out += string(ev.GetData().GetStdout())
		if ev.GetEnd() != nil {
			end = ev.GetEnd()
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if out != "hi user\n" || end == nil || end.GetExitCode() != 7 {
		t.Errorf("command: stdout %q, end %v; want \"hi user\\n\" and exit 7", out, end)
	}
	den.stop()
	den.url, den.key = "", "" // start waits for the new ones
	den.start()
	if got := e2bEnvFile(t, den.dataDir)["E2B_API_KEY"]; got != env["E2B_API_KEY"] {
		t.Errorf("E2B_API_KEY after restart = %q, want %q", got, env["E2B_API_KEY"])
	}
}
