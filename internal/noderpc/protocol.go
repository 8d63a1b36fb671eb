// Package noderpc is the sandbox protocol between a den server and a den
// agent, over the agent's node link (internal/nodelink). Two directions:
//
//   - The server drives the agent's node: start, destroy, suspend, resume,
//     snapshots, stats, and byte streams to a sandbox's guest agent
//     (RemoteNode on the server, ServeNode on the agent).
//   - The agent's node reads and settles its records in the replicated
//     store through the server (RemoteRecords on the agent, ServeRecords on
//     the server). The server scopes every such call to the calling node:
//     a node reads and writes only the sandboxes and snapshots placed on
//     it, and cannot move one elsewhere. What an agent sends is untrusted.
package noderpc

import (
	"encoding/json"

	"github.com/denhq/den/internal/node"
	"github.com/denhq/den/internal/store"
)

// Methods the agent serves (server → agent).
const (
	mInfo           = "node.info"
	mStart          = "node.start"
	mStartNew       = "node.start_new"
	mDestroy        = "node.destroy"
	mSuspend        = "node.suspend"
	mResume         = "node.resume"
	mSetNetwork     = "node.set_network"
	mCreateSnapshot = "node.create_snapshot"
	mDeleteSnapshot = "node.delete_snapshot"
	mStartClones    = "node.start_clones"
	mStats          = "node.stats"
	mGuest          = "node.guest" // a byte stream
)

// Methods the server serves (agent → server).
const (
	mRecSandbox        = "records.sandbox"
	mRecSandboxes      = "records.sandboxes"
	mRecCreateSandbox  = "records.create_sandbox"
	mRecUpdateSandbox  = "records.update_sandbox"
	mRecDeleteSandbox  = "records.delete_sandbox"
	mRecSnapshot       = "records.snapshot"
	mRecSnapshotByName = "records.snapshot_by_name"
	mRecSnapshots      = "records.snapshots"
	mRecCreateSnapshot = "records.create_snapshot"
	mRecDeleteSnapshot = "records.delete_snapshot"
	mRecPools          = "records.pools"
)

// idReq names one sandbox or snapshot.
type idReq struct {
	ID string `json:"id"`
}

// recordReq names one sandbox and may carry its record as the server last
// read it, so that the node need not read it back over the link (start,
// destroy). An agent that does not know Record reads the record by ID.
type recordReq struct {
	ID     string         `json:"id"`
	Record *store.Sandbox `json:"record,omitempty"`
}

// record is the record req carries for its ID, else one to read.
func (req recordReq) record() *store.Sandbox {
	if req.Record != nil && req.Record.ID == req.ID {
		return req.Record
	}
	return &store.Sandbox{ID: req.ID}
}

// startedReq is what a node sends of a sandbox it started new to have it
// recorded (records.create_sandbox): the server holds the rest.
type startedReq struct {
	ID     string          `json:"id"`
	Handle json.RawMessage `json:"handle"`
}

type networkReq struct {
	ID     string              `json:"id"`
	Policy store.NetworkPolicy `json:"policy"`
}

type clonesReq struct {
	Snapshot string   `json:"snapshot"`
	IDs      []string `json:"ids"`
}

type nameReq struct {
	Tenant string `json:"tenant"`
	Name   string `json:"name,omitempty"`
}

type sandboxesResp struct {
	Sandboxes []*store.Sandbox `json:"sandboxes"`
	Next      string           `json:"next,omitempty"`
}

// updateResp is the index an update was stored at.
type updateResp struct {
	ModifyIndex uint64 `json:"modify_index"`
}

// Info is what the server keeps of an agent's node between calls.
type Info struct {
	ID           string                    `json:"id"`
	Runtimes     []node.RuntimeInfo        `json:"runtimes"`
	Resources    node.Resources            `json:"resources"`
	Pools        map[string]node.PoolState `json:"pools,omitempty"`
	PoolBudgetMB int64                     `json:"pool_budget_mb"`
	// PoolBudgetErr is why the pool budget is unknown, when it is.
	PoolBudgetErr string `json:"pool_budget_err,omitempty"`
}
