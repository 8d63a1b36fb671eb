package rest

import "time"

// Node states.
const (
	// NodeReady: the node runs sandboxes.
	NodeReady = "ready"
)

// Node is a host that runs sandboxes, as GET /v1/nodes shows it.
type Node struct {
	ID    string `json:"id"`
	State string `json:"state"`
	// Runtimes are the node's sandbox runtimes, the default first, with
	// the acceleration each uses.
	Runtimes []RuntimeInfo `json:"runtimes"`
	// CPUs and MemoryMB are the host's; MemoryAvailableMB is its memory
	// not in use now (MemAvailable).
	CPUs              int   `json:"cpus"`
	MemoryMB          int64 `json:"memory_mb"`
	MemoryAvailableMB int64 `json:"memory_available_mb"`
	// Sandboxes counts the sandboxes running on the node.
	Sandboxes int `json:"sandboxes"`
	// Version is the den version the node runs.
	Version string `json:"version"`
	// Cluster is the node's record in a cluster; absent for den up's
	// local node.
	Cluster *NodeDetail `json:"cluster,omitempty"`
}

// NodeList is the body of GET /v1/nodes, ordered by ID.
type NodeList struct {
	Nodes []Node `json:"nodes"`
}

// Node states of a cluster's nodes (den server and den agent).
const (
	// NodeDown: the node's heartbeats stopped; its sandboxes were lost.
	NodeDown = "down"
	// NodeDraining: connected, but new sandboxes are not placed on it.
	NodeDraining = "draining"
)

// NodeDetail is what a cluster node record adds to Node; nil for the
// local node of den up.
type NodeDetail struct {
	Name   string            `json:"name"`
	Pool   string            `json:"pool,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// CPUs is the node's capacity in CPUs (Node.CPUs rounds it down).
	CPUs   float64 `json:"cpus"`
	DiskMB int64   `json:"disk_mb,omitempty"`
	// Draining is the operator's mark; it outlives a disconnection.
	Draining bool `json:"draining,omitempty"`
	// Server is the ID of the server the node is, or was last,
	// connected to.
	Server       string    `json:"server,omitempty"`
	RegisteredAt time.Time `json:"registered_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// CreateJoinTokenRequest is the body of POST /v1/tokens.
type CreateJoinTokenRequest struct {
	// TTLSec is how long the token admits nodes; absent means 3600, 0
	// means forever.
	TTLSec *int64 `json:"ttl_sec,omitempty"`
	// Uses is how many nodes it admits; 0 means 1.
	Uses int `json:"uses,omitempty"`
	// Pool and Labels are given to every node it admits.
	Pool   string            `json:"pool,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Role is TokenRoleServer for a token that admits servers (den server
	// --token) instead of agents; it takes no pool or labels.
	Role string `json:"role,omitempty"`
}

// TokenRoleServer is the role of a join token that admits servers.
const TokenRoleServer = "server"

// JoinToken is a join token as the API shows it. Token, the secret form
// that den agent --token takes, is in the answer to its creation only.
type JoinToken struct {
	ID        string            `json:"id"`
	Uses      int               `json:"uses"`
	Used      int               `json:"used"`
	Pool      string            `json:"pool,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	Role      string            `json:"role,omitempty"`
	ExpiresAt *time.Time        `json:"expires_at,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	Token     string            `json:"token,omitempty"`
}

// JoinTokenList is the body of GET /v1/tokens, oldest first.
type JoinTokenList struct {
	Tokens []JoinToken `json:"tokens"`
}
