package rest

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
}

// NodeList is the body of GET /v1/nodes, ordered by ID.
type NodeList struct {
	Nodes []Node `json:"nodes"`
}
