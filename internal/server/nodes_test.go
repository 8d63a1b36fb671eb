package server

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/api/rest"
)

func TestNodes(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	e.create(e.keyA, `{"image":"busybox"}`)
	e.create(e.keyB, `{"image":"busybox"}`)
	var info rest.Info
	e.doJSON("GET", "/v1/info", e.keyA, "", http.StatusOK, &info)
	want := rest.Node{
		ID: info.Node, State: rest.NodeReady, Runtimes: info.RuntimeDetails,
		CPUs: 4, MemoryMB: 8192, MemoryAvailableMB: 4096, Sandboxes: 2, Version: "test",
	}
	var list rest.NodeList
	e.doJSON("GET", "/v1/nodes", e.keyA, "", http.StatusOK, &list)
	if diff := cmp.Diff(rest.NodeList{Nodes: []rest.Node{want}}, list); diff != "" {
		t.Errorf("GET /v1/nodes (-want +got):\n%s", diff)
	}
	var got rest.Node
	e.doJSON("GET", "/v1/nodes/"+info.Node, e.keyA, "", http.StatusOK, &got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GET /v1/nodes/%s (-want +got):\n%s", info.Node, diff)
	}
	var apiErr rest.Error
	e.doJSON("GET", "/v1/nodes/nope", e.keyA, "", http.StatusNotFound, &apiErr)
	if apiErr.Message != "node nope not found" {
		t.Errorf("unknown node: %+v", apiErr)
	}
	e.doJSON("GET", "/v1/nodes", "", "", http.StatusUnauthorized, nil)
}
