package server

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/api/rest"
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
