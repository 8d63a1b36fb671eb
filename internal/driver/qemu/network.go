package qemu

import (
	"context"
	"os"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/guest/vminit"
	"github.com/denhq/den/internal/sandboxnet"
)

// Networks (Config.Networks): a sandbox whose Spec asks for a network gets
// one from the sandboxnet manager under its ID (a spare under the spare's,
// refusing everything, handed to the sandbox on claim), and its VM a
// virtio-net NIC on a tap device in the network's namespace
// (Manager.OpenTap). QEMU stays in the host's namespace; only the tap's
// descriptor is the sandbox's. The guest's side of the tap has the same
// address in every VM (sandboxnet.VMGuestAddr), given on the kernel
// command line (vminit.NetArg), and the namespace masquerades it as the
// sandbox's address: a resumed or cloned guest keeps its configuration.
//
// The migration stream of a VM with a NIC holds the NIC's state, so a
// restore starts QEMU with a NIC too (the manifest's network): a resume
// on the sandbox's network, which stays while it is suspended; a clone on
// a new one, under the spec's policy (refusing everything when the spec
// asks for none). A VM booted without a network never gets a NIC.

// netArg is the guest's network configuration on the kernel command line.
func (d *Driver) netArg() string {
	return vminit.FormatNetArg(sandboxnet.VMGuestAddr, sandboxnet.VMGateway, d.cfg.Networks.DNS())
}

// setupNetwork gives the sandbox its network and opens its VM's tap, when
// its spec asks for one and the driver has networks. The creation holds
// the tap (a stalled boot's restart needs it) until releaseTap.
func (c *creation) setupNetwork(ctx context.Context) (func(context.Context) error, error) {
	nets := c.d.cfg.Networks
	if c.spec.Network == nil || nets == nil {
		return nil, nil
	}
	if _, err := nets.Setup(c.spec.ID, *c.spec.Network); err != nil {
		return nil, err
	}
	undo := func(context.Context) error {
		closeTap(&c.tap)
		return nets.Teardown(c.spec.ID)
	}
	tap, err := nets.OpenTap(c.spec.ID)
	if err != nil {
		return undo, err
	}
	c.tap = tap
	return undo, nil
}

// releaseTap closes the creation's copy of the tap once QEMU runs with
// its own: the tap lives while QEMU does.
func (c *creation) releaseTap(ctx context.Context) (func(context.Context) error, error) {
	closeTap(&c.tap)
	return nil, nil
}

// attachNetwork opens the tap of a VM restored from a checkpoint of a VM
// with a NIC: on the sandbox's network (a resume), or on a network set up
// for it (a clone) under the spec's policy, or refusing everything when
// the spec asks for none.
func (r *restoring) attachNetwork(ctx context.Context) (func(context.Context) error, error) {
	if !r.m.Network {
		return nil, nil
	}
	nets := r.d.cfg.Networks
	if nets == nil {
		return nil, errdefs.New(errdefs.FailedPrecondition, "the checkpoint's VM has a network and this driver has no sandbox networks")
	}
	var undo func(context.Context) error
	if _, ok := nets.Get(r.spec.ID); !ok {
		pol := sandboxnet.Policy{}
		if r.spec.Network != nil {
			pol = *r.spec.Network
		}
		if _, err := nets.Setup(r.spec.ID, pol); err != nil {
			return nil, err
		}
		undo = func(context.Context) error { return nets.Teardown(r.spec.ID) }
	}
	tap, err := nets.OpenTap(r.spec.ID)
	if err != nil {
		return undo, err
	}
	r.tap = tap
	return func(ctx context.Context) error {
		closeTap(&r.tap)
		if undo != nil {
			return undo(ctx)
		}
		return nil
	}, nil
}

// closeTap closes *tap, if open, and forgets it.
func closeTap(tap **os.File) {
	if *tap != nil {
		(*tap).Close()
		*tap = nil
	}
}

// claimNetwork hands the spare's network to the sandbox, under the
// sandbox's policy; its undo hands it back, for the spare's destruction.
func (c *claiming) claimNetwork(ctx context.Context) (func(context.Context) error, error) {
	nets := c.d.cfg.Networks
	if nets == nil {
		return nil, nil
	}
	if _, ok := nets.Get(c.sp.id); !ok {
		return nil, nil
	}
	if c.spec.Network == nil {
		return nil, errdefs.New(errdefs.Internal, "spare %s has a network the spec does not ask for", c.sp.id)
	}
	if err := nets.Rename(c.sp.id, c.spec.ID); err != nil {
		return nil, err
	}
	undo := func(context.Context) error { return nets.Rename(c.spec.ID, c.sp.id) }
	return undo, nets.SetPolicy(c.spec.ID, *c.spec.Network)
}

// teardownNetwork removes sandbox (or spare) id's network, if any.
func (d *Driver) teardownNetwork(id string) error {
	if d.cfg.Networks == nil {
		return nil
	}
	return d.cfg.Networks.Teardown(id)
}
