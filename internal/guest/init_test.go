package guest

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/internal/envlist"
)

// initEnv is an agent whose hostname changes are recorded, not applied
// (the tests run on the host).
type initEnv struct {
	*env
	hostnames []string
}

// newInitEnv is newEnv with sethostname replaced before the server starts.
func newInitEnv(t *testing.T, sethostname func(string) error) *initEnv {
	t.Helper()
	base := newEnv(t) // for its users and home; its own server stays unused
	ie := &initEnv{}
	a := newAgent(Config{DefaultUser: "tester", Env: []string{"PATH=" + os.Getenv("PATH"), "DEN_BASE=base"}}, base.agent.users)
	a.sethostname = func(h string) error {
		ie.hostnames = append(ie.hostnames, h)
		if sethostname != nil {
			return sethostname(h)
		}
		return nil
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		srv.CloseClientConnections()
		a.Close()
		srv.Close()
	})
	ie.env = &env{t: t, agent: a, srv: srv, home: base.home}
	return ie
}

func postInit(t *testing.T, e *env, body string) *http.Response {
	t.Helper()
	resp, err := http.Post(e.srv.URL+"/init", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestInitAppliesEnvAndHostname(t *testing.T) {
	e := newInitEnv(t, nil)
	resp := postInit(t, e.env, `{"env":{"DEN_BASE":"replaced","DEN_NEW":"new"},"hostname":"box-1"}`)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /init: HTTP %d", resp.StatusCode)
	}
	if diff := cmp.Diff([]string{"box-1"}, e.hostnames); diff != "" {
		t.Errorf("hostnames set (-want +got):\n%s", diff)
	}
	stream, err := e.proc(e.codecs()[0]).Start(testCtx(t), startReq("sh", "-c", `echo "$DEN_BASE|$DEN_NEW"`))
	if err != nil {
		t.Fatal(err)
	}
	if r := collect(t, stream); r.stdout != "replaced|new\n" {
		t.Errorf("process env after init: %q, want %q", r.stdout, "replaced|new\n")
	}
	envs, err := http.Get(e.srv.URL + "/envs")
	if err != nil {
		t.Fatal(err)
	}
	defer envs.Body.Close()
	got := decodeJSON[map[string]string](t, envs)
	if got["DEN_BASE"] != "replaced" || got["DEN_NEW"] != "new" {
		t.Errorf("GET /envs after init: %v", got)
	}
}

func TestInitWithoutHostnameKeepsIt(t *testing.T) {
	e := newInitEnv(t, nil)
	if resp := postInit(t, e.env, `{"env":{"A":"1"}}`); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /init: HTTP %d", resp.StatusCode)
	}
	if len(e.hostnames) != 0 {
		t.Errorf("hostname set to %q by an init without one", e.hostnames)
	}
}

func TestInitErrors(t *testing.T) {
	tests := []struct {
		name, body string
		want       apiError
	}{
		{"malformed", `{"env":`, apiError{"invalid_argument", "init: invalid JSON body: unexpected EOF"}},
		{"unknown field", `{"envs":{}}`, apiError{"invalid_argument", `init: invalid JSON body: json: unknown field "envs"`}},
		{"empty env name", `{"env":{"":"v"}}`, apiError{"invalid_argument", `init: env name "" is invalid: want a non-empty name without '=' or NUL, and a value without NUL`}},
		{"env name with =", `{"env":{"A=B":"v"}}`, apiError{"invalid_argument", `init: env name "A=B" is invalid: want a non-empty name without '=' or NUL, and a value without NUL`}},
		{"long hostname", `{"hostname":"` + strings.Repeat("h", 65) + `"}`, apiError{"invalid_argument", "init: hostname must be at most 64 bytes without NUL"}},
		{"unknown default user", `{"defaultUser":"ghost"}`, apiError{"invalid_argument", `init: default user: user "ghost" not found`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newInitEnv(t, nil)
			resp := postInit(t, e.env, tc.body)
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("HTTP %d, want 400", resp.StatusCode)
			}
			if diff := cmp.Diff(tc.want, decodeJSON[apiError](t, resp)); diff != "" {
				t.Errorf("error body (-want +got):\n%s", diff)
			}
			if len(e.hostnames) != 0 {
				t.Errorf("hostname set to %q by a rejected init", e.hostnames)
			}
		})
	}
}

// TestInitHostnameFailureKeepsEnv checks a failed init changes nothing.
func TestInitHostnameFailureKeepsEnv(t *testing.T) {
	e := newInitEnv(t, func(string) error { return errors.New("operation not permitted") })
	resp := postInit(t, e.env, `{"env":{"DEN_BASE":"replaced"},"hostname":"h"}`)
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("HTTP %d, want 500", resp.StatusCode)
	}
	if got := envValue(e.agent.baseEnv(), "DEN_BASE"); got != "base" {
		t.Errorf("DEN_BASE after a failed init = %q, want %q", got, "base")
	}
}

// TestInitDefaultUser checks that defaultUser becomes the user of requests
// that name none, and that a rejected one keeps the old default.
func TestInitDefaultUser(t *testing.T) {
	e := newInitEnv(t, nil)
	if resp := postInit(t, e.env, `{"defaultUser":"nobody"}`); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /init: HTTP %d", resp.StatusCode)
	}
	if got := e.agent.defaultUser(); got != "nobody" {
		t.Errorf("default user after init = %q, want nobody", got)
	}
	if resp := postInit(t, e.env, `{"defaultUser":"ghost"}`); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("POST /init with an unknown user: HTTP %d, want 400", resp.StatusCode)
	}
	if got := e.agent.defaultUser(); got != "nobody" {
		t.Errorf("default user after a rejected init = %q, want nobody", got)
	}
}

func TestMergeEnv(t *testing.T) {
	got := envlist.Merge([]string{"A=1", "PATH=/img"}, map[string]string{"A": "2", "C": "3", "B": "4"})
	if diff := cmp.Diff([]string{"A=2", "PATH=/img", "B=4", "C=3"}, got); diff != "" {
		t.Errorf("mergeEnv (-want +got):\n%s", diff)
	}
}
