package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/guest"
	"github.com/denhq/den/sdk/go/dentest"
)

const testKey = "cli-key"

// result is the outcome of one CLI invocation.
type result struct {
	code           int
	stdout, stderr string
}

// cli runs the den command line with args against url, feeding stdin.
func cli(t *testing.T, url, stdin string, args ...string) result {
	t.Helper()
	root := NewRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append([]string{"--url", url, "--api-key", testKey}, args...))
	code := Execute(root)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// isolate clears the environment the CLI reads its configuration from.
func isolate(t *testing.T) {
	t.Setenv("DEN_URL", "")
	t.Setenv("DEN_API_KEY", "")
	t.Setenv("DEN_DATA_DIR", t.TempDir())
}

func TestUsageErrors(t *testing.T) {
	isolate(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad env", []string{"create", "--env", "FOO"}, "den: invalid --env \"FOO\": want KEY=VALUE\nRun 'den create --help' for usage.\n"},
		{"bad metadata filter", []string{"ls", "--metadata", "=x"}, "den: invalid --metadata \"=x\": want KEY=VALUE\nRun 'den ls --help' for usage.\n"},
		{"cp without sandbox", []string{"cp", "a", "./b:c"}, "den: one of SRC and DST must be a sandbox path ID:PATH\nRun 'den cp --help' for usage.\n"},
		{"cp two sandboxes", []string{"cp", "a:/x", "b:/y"}, "den: copying between sandboxes is not supported: copy through the local machine\nRun 'den cp --help' for usage.\n"},
		{"cp no path", []string{"cp", "a:", "b"}, "den: the sandbox side needs a path: ID:PATH\nRun 'den cp --help' for usage.\n"},
		{"unknown flag", []string{"ls", "--bogus"}, "den: unknown flag: --bogus\nRun 'den ls --help' for usage.\n"},
		{"exec without command", []string{"exec", "sb-1"}, "den: den exec takes a sandbox ID and a command (den exec ID -- CMD [ARGS...]), got 1 argument(s)\nRun 'den exec --help' for usage.\n"},
		{"run without dash", []string{"run", "base", "echo"}, "den: den run needs the command after --: den run [IMAGE] [flags] -- CMD [ARGS...]\nRun 'den run --help' for usage.\n"},
		{"exec flag-like command without dash", []string{"exec", "sb-1", "ls", "-la"}, "den: unknown shorthand flag: 'l' in -la (put the command after --: den exec ID [flags] -- CMD [ARGS...])\nRun 'den exec --help' for usage.\n"},
		{"rm nothing", []string{"rm"}, "den: den rm takes one or more sandbox IDs, got 0 argument(s)\nRun 'den rm --help' for usage.\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, "http://127.0.0.1:1", "", tc.args...)
			if r.code != 2 || r.stderr != tc.want {
				t.Fatalf("exit %d, stderr %q; want 2, %q", r.code, r.stderr, tc.want)
			}
		})
	}
}

func TestNotConfigured(t *testing.T) {
	isolate(t)
	root := NewRoot()
	var errb bytes.Buffer
	root.SetErr(&errb)
	root.SetArgs([]string{"ls"})
	if code := Execute(root); code != 1 || errb.String() != "den: "+errNotConfigured.Error()+"\n" {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

func TestConfigFromDataDir(t *testing.T) {
	isolate(t)
	srv := dentest.NewServer(dentest.Config{APIKey: testKey})
	defer srv.Close()
	dir := t.TempDir()
	env := "export DEN_URL=" + srv.URL + "\nexport DEN_API_KEY=\"" + testKey + "\"\n"
	if err := os.WriteFile(filepath.Join(dir, "env"), []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	root := NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"--data-dir", dir, "image", "ls", "--json"})
	if code := Execute(root); code != 0 || !strings.Contains(out.String(), `"name": "base"`) {
		t.Fatalf("exit %d, stdout %q", code, out.String())
	}
}

// newEnv starts a fake server backed by a real guest agent in this process.
func newEnv(t *testing.T) *dentest.Server {
	t.Helper()
	isolate(t)
	agent, err := guest.New(guest.Config{Env: os.Environ()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Close() })
	srv := dentest.NewServer(dentest.Config{APIKey: testKey, Envd: agent.Handler()})
	t.Cleanup(srv.Close)
	return srv
}

// ok runs the CLI and fails the test unless it exits 0.
func ok(t *testing.T, url, stdin string, args ...string) string {
	t.Helper()
	r := cli(t, url, stdin, args...)
	if r.code != 0 {
		t.Fatalf("den %v: exit %d, stderr %q", args, r.code, r.stderr)
	}
	return r.stdout
}

func TestSandboxCommands(t *testing.T) {
	srv := newEnv(t)
	id := strings.TrimSpace(ok(t, srv.URL, "", "create", "--name", "box", "--metadata", "team=a", "--cpus", "2", "--timeout", "0"))
	if id == "" {
		t.Fatal("create printed no ID")
	}
	table := ok(t, srv.URL, "", "ls")
	if !strings.HasPrefix(table, "ID ") || !strings.Contains(table, id) || !strings.Contains(table, "box") {
		t.Fatalf("ls table:\n%s", table)
	}
	var list rest.SandboxList
	if err := json.Unmarshal([]byte(ok(t, srv.URL, "", "ls", "--json", "--metadata", "team=b")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Sandboxes) != 0 {
		t.Fatalf("ls --metadata team=b = %+v, want none", list.Sandboxes)
	}
	var sb rest.Sandbox
	if err := json.Unmarshal([]byte(ok(t, srv.URL, "", "get", "box", "--json")), &sb); err != nil {
		t.Fatal(err)
	}
	if sb.ID != id || sb.CPUs != 2 || sb.Timeout != 0 || sb.Metadata["team"] != "a" {
		t.Fatalf("get = %+v", sb)
	}
	r := cli(t, srv.URL, "", "rm", id, "sb-missing")
	if r.code != 1 || r.stdout != id+"\n" ||
		r.stderr != "den: sandbox sb-missing not found (not_found)\nden: 1 of 2 sandboxes not deleted\n" {
		t.Fatalf("rm: %+v", r)
	}
	if diff := cmp.Diff([]string{id}, srv.Deleted()); diff != "" {
		t.Fatalf("deleted (-want +got):\n%s", diff)
	}
}

func TestExecCommand(t *testing.T) {
	srv := newEnv(t)
	id := strings.TrimSpace(ok(t, srv.URL, "", "create"))
	r := cli(t, srv.URL, "", "exec", "--env", "X=1", "--cwd", "/tmp", id, "--", "sh", "-c", "echo $X $(pwd); echo oops >&2; exit 7")
	if r.code != 7 || r.stdout != "1 /tmp\n" || r.stderr != "oops\n" {
		t.Fatalf("exec: %+v", r)
	}
	r = cli(t, srv.URL, "piped input\n", "exec", "-i", id, "--", "cat")
	if r.code != 0 || r.stdout != "piped input\n" {
		t.Fatalf("exec -i: %+v", r)
	}
	r = cli(t, srv.URL, "", "exec", id, "--", "sh", "-c", "kill -KILL $$")
	if r.code != 137 {
		t.Fatalf("exec killed: %+v, want exit 137", r)
	}
	r = cli(t, srv.URL, "", "exec", "sb-missing", "--", "true")
	if r.code != 1 || r.stderr != "den: sandbox sb-missing not found (not_found)\n" {
		t.Fatalf("exec in missing sandbox: %+v", r)
	}
}

func TestRunCommand(t *testing.T) {
	srv := newEnv(t)
	r := cli(t, srv.URL, "", "run", "--env", "GREETING=hi", "--", "sh", "-c", "echo ok; exit 5")
	if r.code != 5 || r.stdout != "ok\n" {
		t.Fatalf("run: %+v", r)
	}
	if len(srv.Deleted()) != 1 || len(srv.Sandboxes()) != 0 {
		t.Fatalf("run left sandboxes %v, deleted %v", srv.Sandboxes(), srv.Deleted())
	}
	r = cli(t, srv.URL, "", "run", "no-such-image", "--", "true")
	if r.code != 1 || r.stderr != "den: image \"no-such-image\" not found (not_found)\n" {
		t.Fatalf("run with a missing image: %+v", r)
	}
}

func TestCopyRoundTrip(t *testing.T) {
	srv := newEnv(t)
	id := strings.TrimSpace(ok(t, srv.URL, "", "create"))
	local := t.TempDir()
	remote := t.TempDir() // the guest agent runs in this process
	src := filepath.Join(local, "data.bin")
	content := strings.Repeat("0123456789", 100000)
	if err := os.WriteFile(src, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	ok(t, srv.URL, "", "cp", src, id+":"+remote) // into an existing directory
	back := filepath.Join(local, "back.bin")
	ok(t, srv.URL, "", "cp", id+":"+filepath.Join(remote, "data.bin"), back)
	got, err := os.ReadFile(back)
	if err != nil || string(got) != content {
		t.Fatalf("round trip: %d bytes, %v; want %d bytes", len(got), err, len(content))
	}
	ok(t, srv.URL, "from stdin", "cp", "-", id+":"+filepath.Join(remote, "in.txt"))
	if out := ok(t, srv.URL, "", "cp", id+":"+filepath.Join(remote, "in.txt"), "-"); out != "from stdin" {
		t.Fatalf("cp to stdout = %q", out)
	}
	r := cli(t, srv.URL, "", "cp", id+":"+remote, local)
	if r.code != 1 || r.stderr != "den: "+errCopyDir.Error()+"\n" {
		t.Fatalf("cp directory: %+v", r)
	}
}

func TestImageCommands(t *testing.T) {
	srv := newEnv(t)
	archive := filepath.Join(t.TempDir(), "img.tar")
	if err := os.WriteFile(archive, []byte("pretend tar"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := ok(t, srv.URL, "", "image", "import", archive, "--name", "mine")
	if !strings.HasPrefix(out, "mine sha256:") {
		t.Fatalf("import printed %q", out)
	}
	table := ok(t, srv.URL, "", "image", "ls")
	if !strings.Contains(table, "mine") || !strings.Contains(table, "11B") {
		t.Fatalf("image ls:\n%s", table)
	}
	r := cli(t, srv.URL, "", "image", "rm", "mine", "nope")
	if r.code != 1 || r.stdout != "mine\n" || !strings.Contains(r.stderr, "image nope not found (not_found)") {
		t.Fatalf("image rm: %+v", r)
	}
}

func TestVersion(t *testing.T) {
	if out := ok(t, "http://unused:1", "", "version"); !strings.HasPrefix(out, "den dev (") {
		t.Fatalf("version = %q", out)
	}
}

func TestConnectionRefusedSaysWhatToDo(t *testing.T) {
	var out strings.Builder
	code := report(&out, fmt.Errorf("list sandboxes: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}))
	if code != 1 || !strings.Contains(out.String(), "is `den up` running?") {
		t.Fatalf("report = %d %q, want 1 and a hint to start den", code, out.String())
	}
}

func TestSuspendResumeCommands(t *testing.T) {
	srv := newEnv(t)
	id := strings.TrimSpace(ok(t, srv.URL, "", "create", "--timeout", "1m", "--timeout-action", "suspend",
		"--idle-timeout", "10m", "--idle-action", "suspend"))
	var sb rest.Sandbox
	if err := json.Unmarshal([]byte(ok(t, srv.URL, "", "get", id, "--json")), &sb); err != nil {
		t.Fatal(err)
	}
	if sb.TimeoutAction != "suspend" || sb.IdleTimeout != 600 || sb.IdleAction != "suspend" {
		t.Fatalf("create with timers: %+v", sb)
	}
	if out := ok(t, srv.URL, "", "suspend", id); out != id+"\n" {
		t.Fatalf("suspend printed %q", out)
	}
	r := cli(t, srv.URL, "", "suspend", id)
	if want := "den: sandbox " + id + " is suspended: only a running sandbox can be suspended (failed_precondition)\n"; r.code != 1 || r.stderr != want {
		t.Fatalf("suspend of a suspended sandbox: %+v, want stderr %q", r, want)
	}
	text := ok(t, srv.URL, "", "get", id)
	for _, want := range []string{"State:        suspended\n", "Suspended:    ", "Timeout left: 1m0s of running time", "Snapshot:     4.0KiB\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("get of a suspended sandbox lacks %q:\n%s", want, text)
		}
	}
	if err := json.Unmarshal([]byte(ok(t, srv.URL, "", "resume", id, "--json")), &sb); err != nil {
		t.Fatal(err)
	}
	if sb.State != rest.StateRunning || sb.SuspendedAt != nil {
		t.Fatalf("resume --json: %+v", sb)
	}
}

func TestLifecycleFlagErrors(t *testing.T) {
	isolate(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"idle timeout not a duration", []string{"create", "--idle-timeout", "10x"},
			"den: invalid argument \"10x\" for \"--idle-timeout\" flag: want whole seconds: a duration such as 90s or 10m, or a number of seconds\nRun 'den create --help' for usage.\n"},
		{"timeout not a duration", []string{"create", "--timeout", "30 min"},
			"den: invalid argument \"30 min\" for \"--timeout\" flag: want whole seconds: a duration such as 90s or 10m, or a number of seconds\nRun 'den create --help' for usage.\n"},
		{"idle timeout fraction", []string{"create", "--idle-timeout", "1.5s"},
			"den: invalid argument \"1.5s\" for \"--idle-timeout\" flag: want whole seconds: a duration such as 90s or 10m, or a number of seconds\nRun 'den create --help' for usage.\n"},
		{"suspend without ID", []string{"suspend"}, "den: den suspend takes one sandbox ID or name, got 0 argument(s)\nRun 'den suspend --help' for usage.\n"},
		{"resume two IDs", []string{"resume", "a", "b"}, "den: den resume takes one sandbox ID or name, got 2 argument(s)\nRun 'den resume --help' for usage.\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, "http://127.0.0.1:1", "", tc.args...)
			if r.code != 2 || r.stderr != tc.want {
				t.Fatalf("exit %d, stderr %q; want 2, %q", r.code, r.stderr, tc.want)
			}
		})
	}
}

func TestPrintTimers(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	var out strings.Builder
	printSandbox(&out, rest.Sandbox{ID: "sb", State: "running", Timeout: 300, TimeoutAction: "kill", ExpiresAt: at(2 * time.Minute),
		IdleTimeout: 60, IdleAction: "suspend", LastActiveAt: at(-10 * time.Second), IdleExpiresAt: at(50 * time.Second)}, now)
	for _, want := range []string{"Timeout:      5m0s, then kill\n", " (in 2m0s)\n", "Idle timeout: 1m0s, then suspend\n", " (10s ago)\n", " (in 50s)\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
