package e2b

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/api/rest"
)

// TestNetworkOf checks E2B's allow_internet_access and network lists
// become den's policy: denying ALL_TRAFFIC is the internet off, allowOut
// and the other denyOut rules pass through.
func TestNetworkOf(t *testing.T) {
	on, off := true, false
	for _, tc := range []struct {
		name string
		req  newSandbox
		want rest.NetworkPolicy
	}{
		{"default", newSandbox{}, rest.NetworkPolicy{Internet: &on}},
		{"no internet", newSandbox{AllowInternetAccess: &off}, rest.NetworkPolicy{Internet: &off}},
		{"only some", newSandbox{Network: &networkConfig{AllowOut: []string{"example.com"}, DenyOut: []string{"0.0.0.0/0"}}},
			rest.NetworkPolicy{Internet: &off, Allow: []string{"example.com"}}},
		{"deny some", newSandbox{Network: &networkConfig{DenyOut: []string{"1.2.3.0/24"}, AllowOut: []string{"1.2.3.4"}}},
			rest.NetworkPolicy{Internet: &on, Allow: []string{"1.2.3.4"}, Deny: []string{"1.2.3.0/24"}}},
	} {
		if diff := cmp.Diff(tc.want, *networkOf(tc.req)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}
