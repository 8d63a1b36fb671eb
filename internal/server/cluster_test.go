package server

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/pki"
	"github.com/denhq/den/internal/store"
)

// TestClusterMembers: den up's store is one voter that leads; only admin
// keys may list the members.
func TestClusterMembers(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	admin := e.addAdminKeyOf(tenantA)

	var got rest.ClusterMemberList
	e.doJSON(http.MethodGet, "/v1/cluster/members", admin, "", http.StatusOK, &got)
	zero := int64(0)
	want := rest.ClusterMemberList{Server: nodeID, Members: []rest.ClusterMember{
		{ID: nodeID, Address: nodeID, Role: rest.MemberLeader, Voter: true, LastContactMs: &zero},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("members (-want +got):\n%s", diff)
	}

	status, body := e.do(http.MethodGet, "/v1/cluster/members", e.keyA, "")
	checkAPIError(t, status, body, http.StatusForbidden, rest.Error{
		Code: "permission_denied", Message: "only an admin API key may list cluster members",
	})
}

// TestClusterCAAPI: GET /v1/cluster/ca shows the CA; POST
// /v1/cluster/ca/rotate begins a rotation (the store then trusts a next
// CA and waits for this server) and aborts it; bad actions and non-admin
// keys are refused, and den up, with no node gateway, has no cluster CA.
func TestClusterCAAPI(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withCluster)
	admin := e.addAdminKey()
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.PutClusterCA(context.Background(), ca.CertPEM, ca.KeyPEM); err != nil {
		t.Fatal(err)
	}
	var got rest.ClusterCA
	e.doJSON(http.MethodGet, "/v1/cluster/ca", admin, "", http.StatusOK, &got)
	if got.Phase != "stable" || got.Signer.Hash != ca.Hash() || got.Next != nil || got.Generation != 0 || got.Signer.ExpiresAt == "" {
		t.Fatalf("the CA: %+v", got)
	}
	e.doJSON(http.MethodPost, "/v1/cluster/ca/rotate", admin, "", http.StatusAccepted, &got)
	if got.Phase != store.CATrust || got.Generation != 1 || got.Next == nil || got.Next.Hash == ca.Hash() ||
		len(got.WaitingServers) != 1 || got.WaitingServers[0] != nodeID || got.RotationStartedAt == "" {
		t.Fatalf("after begin: %+v", got)
	}
	status, body := e.do(http.MethodPost, "/v1/cluster/ca/rotate", admin, `{"action":"begin"}`)
	wantErrorCode(t, status, body, http.StatusConflict, "failed_precondition")
	status, body = e.do(http.MethodPost, "/v1/cluster/ca/rotate", admin, `{"action":"twist"}`)
	wantErrorCode(t, status, body, http.StatusBadRequest, "invalid_argument")
	var aborted rest.ClusterCA
	e.doJSON(http.MethodPost, "/v1/cluster/ca/rotate", admin, `{"action":"abort"}`, http.StatusAccepted, &aborted)
	if aborted.Phase != "stable" || aborted.Next != nil || aborted.Signer.Hash != ca.Hash() || aborted.Generation != 2 {
		t.Fatalf("after abort: %+v", aborted)
	}
	status, body = e.do(http.MethodGet, "/v1/cluster/ca", e.keyA, "")
	wantErrorCode(t, status, body, http.StatusForbidden, "permission_denied")

	up := newTestEnv(t)
	status, body = up.do(http.MethodGet, "/v1/cluster/ca", up.addAdminKey(), "")
	wantErrorCode(t, status, body, http.StatusConflict, "failed_precondition")
}

// wantErrorCode checks an API error's status and code, not its message.
func wantErrorCode(t *testing.T, status int, body []byte, wantStatus int, code string) {
	t.Helper()
	var got rest.Error
	if err := json.Unmarshal(body, &got); err != nil || status != wantStatus || got.Code != code || got.Message == "" {
		t.Fatalf("status %d, body %s: want %d with code %q", status, body, wantStatus, code)
	}
}
