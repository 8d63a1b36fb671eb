package daemon

import (
	"context"
	"net"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/node"
	"github.com/denhq/den/internal/server"
	"github.com/denhq/den/internal/store"
)

// noAgentNode is the server.Node of a `den server`, which runs no
// sandboxes itself: every sandbox operation fails Unavailable, saying that
// no agent has joined. It is a placeholder: agents that dial in to the
// servers (den agent --server ...) are being built, and the node gateway
// that drives them will replace it. State (tenants, keys, SSH keys, pools)
// does not need a node and works through any server.
type noAgentNode struct{}

var _ server.Node = noAgentNode{}

// noAgentNodeID is what the placeholder calls itself in GET /v1/nodes.
const noAgentNodeID = "no-agents"

func errNoAgents() error {
	return errdefs.New(errdefs.Unavailable, "no agents have joined this cluster yet (den agent --server ...)")
}

func (noAgentNode) ID() string                            { return noAgentNodeID }
func (noAgentNode) Runtimes() []node.RuntimeInfo          { return nil }
func (noAgentNode) Resources() node.Resources             { return node.Resources{} }
func (noAgentNode) PoolStatus() map[string]node.PoolState { return nil }
func (noAgentNode) PoolMemoryBudgetMB() (int64, error)    { return 0, nil }

func (noAgentNode) Runtime(string) (node.RuntimeInfo, error) {
	return node.RuntimeInfo{}, errNoAgents()
}

func (noAgentNode) SetNetwork(context.Context, string, store.NetworkPolicy) (*store.Sandbox, error) {
	return nil, errNoAgents()
}
func (noAgentNode) Start(context.Context, string) (*store.Sandbox, error) { return nil, errNoAgents() }
func (noAgentNode) Destroy(context.Context, string) error                 { return errNoAgents() }
func (noAgentNode) Suspend(context.Context, string) (*store.Sandbox, error) {
	return nil, errNoAgents()
}
func (noAgentNode) Resume(context.Context, string) (*store.Sandbox, error) { return nil, errNoAgents() }
func (noAgentNode) CreateSnapshot(context.Context, *store.SandboxSnapshot) (*store.SandboxSnapshot, error) {
	return nil, errNoAgents()
}
func (noAgentNode) DeleteSnapshot(context.Context, string) error { return errNoAgents() }
func (noAgentNode) StartClones(context.Context, string, []string) ([]*store.Sandbox, error) {
	return nil, errNoAgents()
}
func (noAgentNode) DialGuest(context.Context, string) (net.Conn, error) { return nil, errNoAgents() }
func (noAgentNode) Stats(context.Context, string) (driver.Stats, error) {
	return driver.Stats{}, errNoAgents()
}
