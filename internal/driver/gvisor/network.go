package gvisor

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/denhq/den/internal/driver/warmpool"
	"github.com/denhq/den/internal/errdefs"
)

// Networks (Config.Networks): a sandbox whose Spec asks for a network gets
// one from the sandboxnet manager under its ID: a spare under the spare's
// (refusing everything), handed to the sandbox on claim. runsc copies the
// namespace's eth0 into its own stack (--network=sandbox) and takes the
// address off the host's interface, so a resume puts it back first.

// setupNetwork gives the sandbox its network, and its resolv.conf, when
// its spec asks for one and the driver has networks.
func (c *creation) setupNetwork(ctx context.Context) (func(context.Context) error, error) {
	if c.spec.Network == nil || c.d.cfg.Networks == nil {
		return nil, nil
	}
	nt, err := c.d.cfg.Networks.Setup(c.spec.ID, *c.spec.Network)
	if err != nil {
		return nil, err
	}
	undo := func(context.Context) error { return c.d.cfg.Networks.Teardown(c.spec.ID) }
	if err := os.WriteFile(c.p.resolvConf(), []byte(c.d.cfg.Networks.ResolvConf()), 0o644); err != nil {
		return undo, fmt.Errorf("write resolv.conf: %w", err)
	}
	c.net = &nt
	return undo, nil
}

// readdressNetwork finds a resuming sandbox's network and puts eth0's
// address back for runsc to copy.
func (c *creation) readdressNetwork(ctx context.Context) (func(context.Context) error, error) {
	if c.d.cfg.Networks == nil {
		return nil, nil
	}
	nt, ok := c.d.cfg.Networks.Get(c.spec.ID)
	if !ok {
		return nil, nil
	}
	if err := c.d.cfg.Networks.Readdress(c.spec.ID); err != nil {
		return nil, err
	}
	c.net = &nt
	return nil, nil
}

// claimNetwork hands the spare's network to the sandbox, under the
// sandbox's policy; its undo hands it back, for the spare's destruction.
func (c *creation) claimNetwork(ctx context.Context) (func(context.Context) error, error) {
	nets := c.d.cfg.Networks
	if nets == nil {
		return nil, nil
	}
	if _, ok := nets.Get(c.from.id); !ok {
		return nil, nil
	}
	if c.spec.Network == nil {
		return nil, errdefs.New(errdefs.Internal, "spare %s has a network the spec does not ask for", c.from.id)
	}
	record, err := nets.Move(c.from.id, c.spec.ID)
	if err != nil {
		return nil, err
	}
	c.recordNet = record
	undo := func(context.Context) error { return nets.Rename(c.spec.ID, c.from.id) }
	return undo, nets.SetPolicy(c.spec.ID, *c.spec.Network)
}

// teardownNetwork removes sandbox (or spare) id's network, if any.
func (d *Driver) teardownNetwork(id string) error {
	if d.cfg.Networks == nil {
		return nil
	}
	return d.cfg.Networks.Teardown(id)
}

// recoverClaimedNetwork moves the network of claimed sandbox id back under
// its ID when a crash came before the claim recorded it (claimSteps): the
// network is then found under the spare's ID, which st's runtime ID keeps.
func (d *Driver) recoverClaimedNetwork(id string, st sandboxState) error {
	nets := d.cfg.Networks
	if nets == nil {
		return nil
	}
	spare, ok := strings.CutSuffix(st.RuntimeID, runtimeIDSuffix)
	if !ok || spare == id || !strings.HasPrefix(spare, warmpool.IDPrefix) {
		return nil
	}
	if _, ok := nets.Get(id); ok {
		return nil
	}
	if _, ok := nets.Get(spare); !ok {
		return nil
	}
	if err := nets.Rename(spare, id); err != nil {
		return err
	}
	d.log.Info("recorded the network of a claim a crash interrupted", "sandbox", id, "spare", spare)
	return nil
}
