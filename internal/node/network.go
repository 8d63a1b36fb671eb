package node

import (
	"context"
	"fmt"

	"github.com/denhq/den/internal/sandboxnet"
	"github.com/denhq/den/internal/store"
)

// Sandbox networks (Config.Networks): a sandbox's record holds its egress
// policy (store.Sandbox.Network), which its driver spec carries
// (driver.Spec.Network); the driver makes the network when it creates the
// sandbox and removes it when it destroys it. A policy change goes to the
// network at once, then to the record.

// policyOf is a stored policy as sandboxnet enforces it; nil stays nil.
func policyOf(p *store.NetworkPolicy) *sandboxnet.Policy {
	if p == nil {
		return nil
	}
	return &sandboxnet.Policy{Internet: p.Internet, Allow: p.Allow, Deny: p.Deny}
}

// SetNetwork replaces sandbox id's egress policy: on its network (when the
// node has networks and the sandbox has one: it keeps it while suspended),
// then in its record, which it returns.
func (n *Node) SetNetwork(ctx context.Context, id string, pol store.NetworkPolicy) (*store.Sandbox, error) {
	unlock := n.locks.lock(id) // not while a start or resume makes the network
	defer unlock()
	if nets := n.cfg.Networks; nets != nil {
		if _, ok := nets.Get(id); ok {
			if err := nets.SetPolicy(id, *policyOf(&pol)); err != nil {
				return nil, fmt.Errorf("network policy of sandbox %s: %w", id, err)
			}
		}
	}
	return n.setState(ctx, id, func(sb *store.Sandbox) {
		p := pol.Clone()
		sb.Network = &p
	})
}

// networkOn is the default policy, for sandboxes without a record (build
// steps) and the shapes of pools.
func networkOn() *sandboxnet.Policy {
	p := sandboxnet.DefaultPolicy()
	return &p
}
