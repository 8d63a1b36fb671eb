package e2b

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/denhq/den/api/rest"
)

// state is the E2B state GET shows for sandbox id.
func (e *testEnv) state(id string) string {
	e.t.Helper()
	r := e.call("GET", "/sandboxes/"+id, e.keyA, "")
	if r.status != http.StatusOK {
		e.t.Fatalf("GET %s: HTTP %d %s", id, r.status, r.body)
	}
	var d sandboxDetail
	decode(e.t, r.body, &d)
	return d.State
}

// listed returns the IDs a list route shows.
func (e *testEnv) listed(path string) []string {
	e.t.Helper()
	var l []sandboxDetail
	decode(e.t, e.call("GET", path, e.keyA, "").body, &l)
	var ids []string
	for _, sb := range l {
		ids = append(ids, sb.SandboxID)
	}
	return ids
}

func TestPauseAndConnect(t *testing.T) {
	e := newTestEnv(t)
	id := e.create(e.keyA, `{"templateID":"busybox","timeout":60}`).SandboxID
	other := e.create(e.keyA, `{"templateID":"busybox"}`).SandboxID

	if r := e.call("POST", "/sandboxes/"+id+"/pause", e.keyA, ""); r.status != http.StatusNoContent {
		t.Fatalf("pause: HTTP %d %s", r.status, r.body)
	}
	if s := e.state(id); s != statePaused {
		t.Fatalf("state after pause: %s", s)
	}
	checkError(t, e.call("POST", "/sandboxes/"+id+"/pause", e.keyA, ""), http.StatusConflict, `sandbox "`+id+`" is already paused`)
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/v2/sandboxes?state=paused", []string{id}},
		{"/v2/sandboxes?state=running", []string{other}},
		{"/v2/sandboxes", []string{id, other}},
		{"/sandboxes", []string{other}}, // v1 lists running sandboxes only
	} {
		got := e.listed(tc.path)
		slices.Sort(got)
		want := slices.Sorted(slices.Values(tc.want))
		if !slices.Equal(got, want) {
			t.Errorf("GET %s lists %v, want %v", tc.path, got, want)
		}
	}

	for i, path := range []string{"/sandboxes/" + id + "/connect", "/v2/sandboxes/" + id + "/connect"} {
		want := http.StatusCreated // the first connect resumed it
		if i > 0 {
			want = http.StatusOK
		}
		r := e.call("POST", path, e.keyA, `{"timeout":300}`)
		var sb sandbox
		decode(t, r.body, &sb)
		if r.status != want || sb.SandboxID != id || sb.EnvdAccessToken == "" {
			t.Fatalf("%s: HTTP %d (want %d) %s", path, r.status, want, r.body)
		}
	}
	if s := e.state(id); s != stateRunning {
		t.Fatalf("state after connect: %s", s)
	}
	var d sandboxDetail
	decode(t, e.call("GET", "/sandboxes/"+id, e.keyA, "").body, &d)
	if left := time.Until(d.EndAt); left < 290*time.Second {
		t.Errorf("endAt after connect with timeout 300 is %v away", left)
	}
}

func TestDeprecatedResume(t *testing.T) {
	e := newTestEnv(t)
	id := e.create(e.keyA, `{"templateID":"busybox","timeout":30}`).SandboxID
	if r := e.call("POST", "/sandboxes/"+id+"/pause", e.keyA, ""); r.status != http.StatusNoContent {
		t.Fatalf("pause: HTTP %d %s", r.status, r.body)
	}
	r := e.call("POST", "/sandboxes/"+id+"/resume", e.keyA, `{"timeout":600,"autoPause":true}`)
	var sb sandbox
	decode(t, r.body, &sb)
	if r.status != http.StatusCreated || sb.SandboxID != id {
		t.Fatalf("resume: HTTP %d %s", r.status, r.body)
	}
	checkError(t, e.call("POST", "/sandboxes/"+id+"/resume", e.keyA, ""), http.StatusConflict, `sandbox "`+id+`" is already running`)
	var d sandboxDetail
	decode(t, e.call("GET", "/sandboxes/"+id, e.keyA, "").body, &d)
	if d.State != stateRunning || time.Until(d.EndAt) < 590*time.Second {
		t.Errorf("after resume with timeout 600: state %s, endAt in %v", d.State, time.Until(d.EndAt))
	}
}

func TestAutoPauseMapsToTimeoutActionSuspend(t *testing.T) {
	e := newTestEnv(t)
	withAuto := e.create(e.keyA, `{"templateID":"busybox","autoPause":true}`).SandboxID
	without := e.create(e.keyA, `{"templateID":"busybox"}`).SandboxID
	for id, want := range map[string]string{withAuto: rest.ActionSuspend, without: rest.ActionKill} {
		sb, err := e.st.Snapshot().Sandbox(id)
		if err != nil {
			t.Fatal(err)
		}
		if sb.TimeoutAction != want {
			t.Errorf("sandbox %s: timeout action %q, want %q", id, sb.TimeoutAction, want)
		}
	}
}

// TestTrafficResumesPausedSandbox: an authorised envd request to a paused
// sandbox resumes it and is served; an anonymous health probe is not.
func TestTrafficResumesPausedSandbox(t *testing.T) {
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"templateID":"busybox"}`)
	id, tok := sb.SandboxID, sb.EnvdAccessToken
	if r := e.call("POST", "/sandboxes/"+id+"/pause", e.keyA, ""); r.status != http.StatusNoContent {
		t.Fatalf("pause: HTTP %d %s", r.status, r.body)
	}
	r := e.do("GET", e.traffic+"/health", "", envdHeaders(id, ""))
	if r.status != http.StatusBadGateway || e.state(id) != statePaused {
		t.Fatalf("anonymous health of a paused sandbox: HTTP %d, state %s", r.status, e.state(id))
	}
	if r := e.do("GET", e.traffic+"/envs", "", envdHeaders(id, tok+"x")); r.status != http.StatusUnauthorized || e.state(id) != statePaused {
		t.Fatalf("wrong token on a paused sandbox: HTTP %d, state %s", r.status, e.state(id))
	}
	if r := e.do("GET", e.traffic+"/envs", "", envdHeaders(id, tok)); r.status != http.StatusOK {
		t.Fatalf("envs of a paused sandbox: HTTP %d %s", r.status, r.body)
	}
	if s := e.state(id); s != stateRunning {
		t.Fatalf("state after traffic: %s", s)
	}
}
