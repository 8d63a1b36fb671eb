package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/denhq/den/api/rest"
)

// TestErrors checks the status, code and message of every error path of
// the API. In paths, bodies and messages {running}, {failed}, {suspended}
// and {deleted} stand for the IDs of tenant A's sandboxes in those states,
// {other} for the ID of the image "other"; key "admin" is an admin key.
func TestErrors(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	running := e.create(e.keyA, `{"image":"busybox","name":"taken"}`).ID
	failed := e.createFailed(e.keyA, "broken")
	deleted := e.create(e.keyA, `{"image":"busybox"}`).ID
	e.doJSON("DELETE", "/v1/sandboxes/"+deleted, e.keyA, "", http.StatusNoContent, nil)
	suspended := e.create(e.keyA, `{"image":"busybox"}`).ID
	e.doJSON("POST", "/v1/sandboxes/"+suspended+"/suspend", e.keyA, "", http.StatusOK, nil)
	admin := e.addAdminKey()
	other := e.addImage("other")
	ids := strings.NewReplacer("{running}", running, "{failed}", failed, "{deleted}", deleted, "{suspended}", suspended, "{other}", other)

	const (
		missingKey = "missing API key: send it in the X-API-Key header (see DEN_API_KEY in <data-dir>/env)"
		exec       = "/envd/process.Process/Start"
		execBody   = `{"process":{"cmd":"true"}}`
	)
	bad := func(msg string) rest.Error { return rest.Error{Code: "invalid_argument", Message: msg} }
	denied := func(what string) rest.Error {
		return rest.Error{Code: "permission_denied", Message: "only an admin API key may " + what}
	}
	notFound := func(msg string) rest.Error { return rest.Error{Code: "not_found", Message: msg} }
	tests := []struct {
		name         string
		method, path string
		key          string // "A", "" (none) or a literal key
		body         string
		wantStatus   int
		want         rest.Error
	}{
		// Authentication.
		{"no API key", "GET", "/v1/sandboxes", "", "", 401, rest.Error{Code: "unauthenticated", Message: missingKey}},
		{"no API key on envd proxy", "POST", "/v1/sandboxes/{running}" + exec, "", execBody, 401, rest.Error{Code: "unauthenticated", Message: missingKey}},
		{"unknown API key", "GET", "/v1/sandboxes", "den_0123", "", 401, rest.Error{Code: "unauthenticated", Message: "invalid API key"}},
		{"unknown API key on info", "GET", "/v1/info", "nope", "", 401, rest.Error{Code: "unauthenticated", Message: "invalid API key"}},

		// Unknown sandboxes.
		{"get unknown", "GET", "/v1/sandboxes/nosuch", "A", "", 404, notFound("sandbox nosuch not found")},
		{"get deleted", "GET", "/v1/sandboxes/{deleted}", "A", "", 404, notFound("sandbox {deleted} not found")},
		{"delete unknown", "DELETE", "/v1/sandboxes/nosuch", "A", "", 404, notFound("sandbox nosuch not found")},
		{"delete deleted", "DELETE", "/v1/sandboxes/{deleted}", "A", "", 404, notFound("sandbox {deleted} not found")},
		{"timeout of unknown", "POST", "/v1/sandboxes/nosuch/timeout", "A", `{"timeout":10}`, 404, notFound("sandbox nosuch not found")},
		{"suspend unknown", "POST", "/v1/sandboxes/nosuch/suspend", "A", "", 404, notFound("sandbox nosuch not found")},
		{"resume unknown", "POST", "/v1/sandboxes/nosuch/resume", "A", "", 404, notFound("sandbox nosuch not found")},
		{"suspend deleted", "POST", "/v1/sandboxes/{deleted}/suspend", "A", "", 404, notFound("sandbox {deleted} not found")},
		{"envd of unknown", "GET", "/v1/sandboxes/nosuch/envd/health", "A", "", 404, notFound("sandbox nosuch not found")},
		{"exec in deleted", "POST", "/v1/sandboxes/{deleted}" + exec, "A", execBody, 404, notFound("sandbox {deleted} not found")},
		{"exec in failed", "POST", "/v1/sandboxes/{failed}" + exec, "A", execBody, 409,
			rest.Error{Code: "failed_precondition", Message: "sandbox {failed} is failed, not running"}},
		{"health of failed by name", "GET", "/v1/sandboxes/broken/envd/health", "A", "", 409,
			rest.Error{Code: "failed_precondition", Message: "sandbox {failed} is failed, not running"}},

		// Suspend and resume: only from the right state.
		{"suspend suspended", "POST", "/v1/sandboxes/{suspended}/suspend", "A", "", 409,
			rest.Error{Code: "failed_precondition", Message: "sandbox {suspended} is suspended: only a running sandbox can be suspended"}},
		{"suspend failed", "POST", "/v1/sandboxes/broken/suspend", "A", "", 409,
			rest.Error{Code: "failed_precondition", Message: "sandbox {failed} is failed: only a running sandbox can be suspended"}},
		{"resume running", "POST", "/v1/sandboxes/{running}/resume", "A", "", 409,
			rest.Error{Code: "failed_precondition", Message: "sandbox {running} is running: only a suspended sandbox can be resumed"}},
		{"resume failed", "POST", "/v1/sandboxes/{failed}/resume", "A", "", 409,
			rest.Error{Code: "failed_precondition", Message: "sandbox {failed} is failed: only a suspended sandbox can be resumed"}},
		{"suspend without API key", "POST", "/v1/sandboxes/{running}/suspend", "", "", 401, rest.Error{Code: "unauthenticated", Message: missingKey}},

		// Create: sizes and fields.
		{"cpus too small", "POST", "/v1/sandboxes", "A", `{"image":"busybox","cpus":0.001}`, 400, bad("cpus must be at least 0.01, got 0.001")},
		{"cpus negative", "POST", "/v1/sandboxes", "A", `{"image":"busybox","cpus":-1}`, 400, bad("cpus must be between 0.01 and 64, got -1")},
		{"cpus too large", "POST", "/v1/sandboxes", "A", `{"image":"busybox","cpus":100}`, 400, bad("cpus must be between 0.01 and 64, got 100")},
		{"memory too small", "POST", "/v1/sandboxes", "A", `{"image":"busybox","memory_mb":1}`, 400, bad("memory_mb must be between 32 and 262144, got 1")},
		{"memory too large", "POST", "/v1/sandboxes", "A", `{"image":"busybox","memory_mb":1099511627776}`, 400, bad("memory_mb must be between 32 and 262144, got 1099511627776")},
		{"disk too small", "POST", "/v1/sandboxes", "A", `{"image":"busybox","disk_mb":1}`, 400, bad("disk_mb must be between 16 and 4194304, got 1")},
		{"disk too large", "POST", "/v1/sandboxes", "A", `{"image":"busybox","disk_mb":4194305}`, 400, bad("disk_mb must be between 16 and 4194304, got 4194305")},
		{"negative timeout", "POST", "/v1/sandboxes", "A", `{"image":"busybox","timeout":-1}`, 400, bad("timeout must be between 0 (none) and 2592000 seconds, got -1")},
		{"timeout too long", "POST", "/v1/sandboxes", "A", `{"image":"busybox","timeout":2592001}`, 400, bad("timeout must be between 0 (none) and 2592000 seconds, got 2592001")},
		{"bad timeout action", "POST", "/v1/sandboxes", "A", `{"image":"busybox","timeout_action":"pause"}`, 400, bad(`timeout_action must be "kill" or "suspend", got "pause"`)},
		{"negative idle timeout", "POST", "/v1/sandboxes", "A", `{"image":"busybox","idle_timeout":-1}`, 400, bad("idle_timeout must be between 0 (none) and 2592000 seconds, got -1")},
		{"idle timeout too long", "POST", "/v1/sandboxes", "A", `{"image":"busybox","idle_timeout":2592001}`, 400, bad("idle_timeout must be between 0 (none) and 2592000 seconds, got 2592001")},
		{"negative capacity wait", "POST", "/v1/sandboxes", "A", `{"image":"busybox","capacity_wait":-1}`, 400, bad("capacity_wait must be between 0 and 600 seconds, got -1")},
		{"capacity wait too long", "POST", "/v1/sandboxes", "A", `{"image":"busybox","capacity_wait":601}`, 400, bad("capacity_wait must be between 0 and 600 seconds, got 601")},
		{"bad idle action", "POST", "/v1/sandboxes", "A", `{"image":"busybox","idle_timeout":10,"idle_action":"Suspend"}`, 400, bad(`idle_action must be "kill" or "suspend", got "Suspend"`)},
		{"bad name", "POST", "/v1/sandboxes", "A", `{"image":"busybox","name":"Bad_Name"}`, 400, bad(`name "Bad_Name" is invalid: use 1-63 lowercase letters, digits and dashes`)},
		{"name ending in dash", "POST", "/v1/sandboxes", "A", `{"image":"busybox","name":"web-"}`, 400, bad(`name "web-" is invalid: use 1-63 lowercase letters, digits and dashes`)},
		{"bad env key", "POST", "/v1/sandboxes", "A", `{"image":"busybox","env":{"1X":"v"}}`, 400, bad(`env name "1X" is invalid: use letters, digits and _, not starting with a digit`)},
		{"env key with dash", "POST", "/v1/sandboxes", "A", `{"image":"busybox","env":{"A-B":"v"}}`, 400, bad(`env name "A-B" is invalid: use letters, digits and _, not starting with a digit`)},
		{"empty metadata key", "POST", "/v1/sandboxes", "A", `{"image":"busybox","metadata":{"":"v"}}`, 400, bad(`metadata key "" is invalid: keys are 1-256 bytes, values at most 4096`)},
		{"unknown field", "POST", "/v1/sandboxes", "A", `{"image":"busybox","gpus":1}`, 400, bad(`invalid JSON body: json: unknown field "gpus"`)},
		{"empty body", "POST", "/v1/sandboxes", "A", "", 400, bad("request body is empty: send a JSON object")},
		{"malformed JSON", "POST", "/v1/sandboxes", "A", `{"image":`, 400, bad("invalid JSON body: unexpected EOF")},
		{"trailing data", "POST", "/v1/sandboxes", "A", `{"image":"busybox"} {"name":"x"}`, 400, bad("invalid JSON body: data after the JSON object")},
		{"wrong type", "POST", "/v1/sandboxes", "A", `{"cpus":"two"}`, 400, bad("invalid JSON body: json: cannot unmarshal string into Go struct field CreateSandboxRequest.cpus of type float64")},
		{"unknown image", "POST", "/v1/sandboxes", "A", `{"image":"nosuch"}`, 404, notFound(`get image: image "nosuch" not found`)},
		{"default image missing", "POST", "/v1/sandboxes", "A", `{}`, 404, notFound(`get image: image "base" not found`)},
		{"duplicate name", "POST", "/v1/sandboxes", "A", `{"image":"busybox","name":"taken"}`, 409,
			rest.Error{Code: "already_exists", Message: `sandbox name "taken" is taken by sandbox {running}`}},

		// Timeout.
		{"set negative timeout", "POST", "/v1/sandboxes/{running}/timeout", "A", `{"timeout":-5}`, 400, bad("timeout must be between 0 (none) and 2592000 seconds, got -5")},
		{"set timeout empty body", "POST", "/v1/sandboxes/{running}/timeout", "A", "", 400, bad("request body is empty: send a JSON object")},
		{"set timeout unknown field", "POST", "/v1/sandboxes/{running}/timeout", "A", `{"seconds":5}`, 400, bad(`invalid JSON body: json: unknown field "seconds"`)},

		// List.
		{"limit zero", "GET", "/v1/sandboxes?limit=0", "A", "", 400, bad(`limit must be between 1 and 1000, got "0"`)},
		{"limit too large", "GET", "/v1/sandboxes?limit=1001", "A", "", 400, bad(`limit must be between 1 and 1000, got "1001"`)},
		{"limit not a number", "GET", "/v1/sandboxes?limit=ten", "A", "", 400, bad(`limit must be between 1 and 1000, got "ten"`)},
		{"bad page token", "GET", "/v1/sandboxes?page_token=garbage", "A", "", 400, bad("list sandboxes: invalid page token")},
		{"metadata filter without =", "GET", "/v1/sandboxes?metadata=team", "A", "", 400, bad(`metadata filter "team" is invalid: use key=value`)},
		{"metadata filter without key", "GET", "/v1/sandboxes?metadata=%3Dx", "A", "", 400, bad(`metadata filter "=x" is invalid: use key=value`)},
		{"unknown state", "GET", "/v1/sandboxes?state=running,asleep", "A", "", 400, bad(`list sandboxes: unknown state "asleep"`)},

		// Images. Writes need an admin key; pull, push and build answer
		// errors found before their stream begins as plain errors.
		{"unknown image ref", "GET", "/v1/images/nosuch", "A", "", 404, notFound(`inspect image: image "nosuch" not found`)},
		{"import image without admin key", "POST", "/v1/images?name=x", "A", "", 403, denied("import images")},
		{"remove image without admin key", "DELETE", "/v1/images/busybox", "A", "", 403, denied("remove images")},
		{"tag without admin key", "POST", "/v1/images/busybox/tag", "A", `{"name":"bb"}`, 403, denied("tag images")},
		{"tag unknown image", "POST", "/v1/images/nosuch/tag", "admin", `{"name":"bb"}`, 404, notFound(`tag image: image "nosuch" not found`)},
		{"tag without name", "POST", "/v1/images/busybox/tag", "admin", `{}`, 400, bad(`name is required: send {"name":"NEW-NAME"}`)},
		{"tag bad JSON", "POST", "/v1/images/busybox/tag", "admin", `{"name":`, 400, bad("invalid JSON body: unexpected EOF")},
		{"tag bad name", "POST", "/v1/images/busybox/tag", "admin", `{"name":"Bad Name"}`, 400, bad(`tag image busybox: image name "Bad Name" contains a space or control character`)},
		{"tag name taken", "POST", "/v1/images/busybox/tag", "admin", `{"name":"other"}`, 409,
			rest.Error{Code: "already_exists", Message: `tag image busybox: name "other" is used by image {other}`}},
		{"export unknown image", "GET", "/v1/images/nosuch/export", "A", "", 404, notFound(`get image: image "nosuch" not found`)},
		{"export bad format", "GET", "/v1/images/busybox/export?format=zip", "A", "", 400, bad(`format "zip" is invalid: use docker-archive or oci`)},
		{"prune without admin key", "POST", "/v1/images/prune", "A", "", 403, denied("prune images")},
		{"pull without admin key", "POST", "/v1/images/pull", "A", `{"ref":"busybox"}`, 403, denied("pull images")},
		{"pull without ref", "POST", "/v1/images/pull", "admin", `{"insecure":true}`, 400, bad("ref is required: the image to pull, e.g. docker.io/library/alpine:3.20")},
		{"pull bad JSON", "POST", "/v1/images/pull", "admin", `{"ref":"busybox","tls":false}`, 400, bad(`invalid JSON body: json: unknown field "tls"`)},
		{"pull empty body", "POST", "/v1/images/pull", "admin", "", 400, bad("request body is empty: send a JSON object")},
		{"pull bad reference", "POST", "/v1/images/pull", "admin", `{"ref":"UPPER/case"}`, 400, bad(`pull image: invalid image reference "UPPER/case": could not parse reference: UPPER/case`)},
		{"push without admin key", "POST", "/v1/images/push", "A", `{"image":"busybox","dest":"r/x"}`, 403, denied("push images")},
		{"push without image", "POST", "/v1/images/push", "admin", `{"dest":"r/x"}`, 400, bad("image is required: the name or ID of the image to push")},
		{"push without dest", "POST", "/v1/images/push", "admin", `{"image":"busybox"}`, 400, bad("dest is required: the registry reference to push to, e.g. registry.example.com/team/app:v1")},
		{"push unknown image", "POST", "/v1/images/push", "admin", `{"image":"nosuch","dest":"r/x"}`, 404, notFound(`get image: image "nosuch" not found`)},
		{"push bad JSON", "POST", "/v1/images/push", "admin", `[]`, 400, bad("invalid JSON body: json: cannot unmarshal array into Go value of type rest.PushImageRequest")},
		{"build without admin key", "POST", "/v1/images/build", "A", "", 403, denied("build images")},
		{"build without a builder", "POST", "/v1/images/build?t=x", "admin", "", 501,
			rest.Error{Code: "unsupported", Message: "this server cannot build images: it was started without an image builder"}},

		// Routes.
		{"unknown route", "GET", "/v2/sandboxes", "", "", 404, notFound("no route for GET /v2/sandboxes")},
		{"method not served", "PUT", "/v1/sandboxes", "A", "", 404, notFound("no route for PUT /v1/sandboxes")},
		{"unknown sub-route", "GET", "/v1/sandboxes/{running}/logs", "A", "", 404, notFound("no route for GET /v1/sandboxes/{running}/logs")},
		{"internal guest route", "POST", "/v1/sandboxes/{running}/envd/init", "A", `{"env":{"A":"1"}}`, 404, notFound("no route for POST /v1/sandboxes/{running}/envd/init")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := tt.key
			switch key {
			case "A":
				key = e.keyA
			case "admin":
				key = admin
			}
			status, body := e.do(tt.method, ids.Replace(tt.path), key, tt.body)
			want := tt.want
			want.Message = ids.Replace(want.Message)
			checkAPIError(t, status, body, tt.wantStatus, want)
		})
	}
}

// TestAuthentication checks which headers carry the API key.
func TestAuthentication(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	tests := []struct {
		name       string
		header     func(h http.Header)
		wantStatus int
	}{
		{"X-API-Key", func(h http.Header) { h.Set("X-API-Key", e.keyA) }, 200},
		{"Bearer", func(h http.Header) { h.Set("Authorization", "Bearer "+e.keyA) }, 200},
		{"Basic is not an API key", func(h http.Header) { h.Set("Authorization", "Basic "+e.keyA) }, 401},
		{"bare Authorization is not an API key", func(h http.Header) { h.Set("Authorization", e.keyA) }, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest("GET", e.url+"/v1/info", nil)
			if err != nil {
				t.Fatal(err)
			}
			tt.header(req.Header)
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
		})
	}
}
