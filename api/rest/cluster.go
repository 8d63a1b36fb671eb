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

// ClusterCA is the body of GET /v1/cluster/ca and of the rotation calls:
// the cluster CA and where a rotation of it stands.
type ClusterCA struct {
	// Phase is "stable", "trust" (a new CA is trusted beside the signer)
	// or "sign" (the new CA signs; the previous is still trusted).
	Phase string `json:"phase"`
	// Generation counts the rotation steps ever taken.
	Generation uint64 `json:"generation"`
	// Signer signs certificates now; Next is trusted beside it in phase
	// trust, Previous in phase sign.
	Signer   CACert  `json:"signer"`
	Next     *CACert `json:"next,omitempty"`
	Previous *CACert `json:"previous,omitempty"`
	// RotationStartedAt is when the rotation under way began, RotatedAt
	// when the last one finished (RFC 3339).
	RotationStartedAt string `json:"rotation_started_at,omitempty"`
	RotatedAt         string `json:"rotated_at,omitempty"`
	// WaitingServers and WaitingNodes have not taken the current step
	// yet; the next waits for them. A node that is down is not waited
	// for: it joins again with a token after the rotation.
	WaitingServers []string `json:"waiting_servers"`
	WaitingNodes   []string `json:"waiting_nodes"`
}

// CACert names a CA certificate.
type CACert struct {
	// Hash is "sha256:<hex>" of the certificate, as join tokens carry it.
	Hash string `json:"hash"`
	// ExpiresAt is when it stops being valid (RFC 3339).
	ExpiresAt string `json:"expires_at"`
}

// CA rotation actions (RotateClusterCARequest.Action).
const (
	CARotateBegin = "begin"
	CARotateAbort = "abort"
)

// RotateClusterCARequest is the body of POST /v1/cluster/ca/rotate.
type RotateClusterCARequest struct {
	// Action is "begin" (the default) or "abort" (only in phase trust).
	Action string `json:"action,omitempty"`
}
