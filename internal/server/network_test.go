package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/api/rest"
)

func TestNetworkPolicy(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"image":"busybox"}`)
	var got rest.NetworkPolicy
	e.doJSON("GET", "/v1/sandboxes/"+sb.ID+"/network", e.keyA, "", http.StatusOK, &got)
	if diff := cmp.Diff(*netPolicy(true), got); diff != "" {
		t.Errorf("default policy (-want +got):\n%s", diff)
	}
	e.doJSON("PUT", "/v1/sandboxes/"+sb.ID+"/network", e.keyA, `{"internet":false,"allow":["EXAMPLE.test"]}`, http.StatusOK, &got)
	off := false
	want := rest.NetworkPolicy{Internet: &off, Allow: []string{"example.test"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("PUT answer (-want +got):\n%s", diff)
	}
	var after rest.Sandbox
	e.doJSON("GET", "/v1/sandboxes/"+sb.ID, e.keyA, "", http.StatusOK, &after)
	if diff := cmp.Diff(&want, after.Network); diff != "" {
		t.Errorf("sandbox after PUT (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		name, key, body string
		status          int
		msg             string
	}{
		{"bad rule", e.keyA, `{"allow":["not a rule"]}`, http.StatusBadRequest, `rule "not a rule" is not`},
		{"IPv6", e.keyA, `{"deny":["::1"]}`, http.StatusBadRequest, "only IPv4"},
		{"unknown field", e.keyA, `{"allowOut":["x"]}`, http.StatusBadRequest, "unknown field"},
		{"another tenant's", e.keyB, `{}`, http.StatusNotFound, "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var apiErr rest.Error
			e.doJSON("PUT", "/v1/sandboxes/"+sb.ID+"/network", tc.key, tc.body, tc.status, &apiErr)
			if !strings.Contains(apiErr.Message, tc.msg) {
				t.Errorf("error %+v, want a message with %q", apiErr, tc.msg)
			}
		})
	}
	var apiErr rest.Error
	e.doJSON("POST", "/v1/sandboxes", e.keyA, `{"image":"busybox","network":{"deny":["a..b"]}}`, http.StatusBadRequest, &apiErr)
	if !strings.Contains(apiErr.Message, `rule "a..b"`) {
		t.Errorf("create with a bad rule: %+v", apiErr)
	}
}
