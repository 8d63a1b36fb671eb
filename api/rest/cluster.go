package rest

// Cluster member roles.
const (
	MemberLeader   = "leader"
	MemberFollower = "follower"
)

// ClusterMember is one den server of the raft cluster, as
// GET /v1/cluster/members shows it from the server that answers.
type ClusterMember struct {
	// ID is the server's ID; Address its cluster address (host:port),
	// or its ID for den up's single in-process voter.
	ID      string `json:"id"`
	Address string `json:"address"`
	// Role is "leader" or "follower", as far as the answering server
	// knows.
	Role string `json:"role"`
	// Voter: the server votes and counts for the quorum.
	Voter bool `json:"voter"`
	// LastContactMs is how long ago the answering server last heard from
	// this one over raft, in milliseconds (0 for itself); absent when it
	// has not heard from it since it started.
	LastContactMs *int64 `json:"last_contact_ms,omitempty"`
}

// ClusterMemberList is the body of GET /v1/cluster/members.
type ClusterMemberList struct {
	// Server is the ID of the server that answered.
	Server  string          `json:"server"`
	Members []ClusterMember `json:"members"`
}
