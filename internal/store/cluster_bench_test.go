package store

import (
	"fmt"
	"testing"

	"github.com/denhq/den/internal/pki"
)

// BenchmarkClusterWrite: one write at a time on the leader and on a
// follower of a three-server cluster on loopback TLS. A follower's write
// is forwarded and returns once the follower has applied it.
func BenchmarkClusterWrite(b *testing.B) {
	ca, err := pki.NewCA("bench")
	if err != nil {
		b.Fatal(err)
	}
	servers := startCluster(b, ca, 3, nil)
	leader, followers := leaderOf(b, servers)
	for _, tc := range []struct {
		name string
		s    *testServer
	}{{"leader", leader}, {"follower", followers[0]}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := b.Context()
			for i := 0; b.Loop(); i++ {
				if err := tc.s.store.PutTenant(ctx, &Tenant{ID: fmt.Sprintf("t-%s-%d", tc.name, i), CreatedAt: base}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
