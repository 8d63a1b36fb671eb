package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/sim"
	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/node"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/noderpc"
)

// agentNode is the sandbox node of a den agent: the host's runtimes, an
// image store of its own that fetches what it lacks from the servers, and
// the sandboxes' networks. It reads and settles its records through the
// link and answers the servers' calls on the mux.
type agentNode struct {
	node    *node.Node
	closers []func()
}

// openAgentNode builds node nodeID from cfg (a den up configuration: data
// dir, runtimes, runsc, networks) and registers its calls on mux, which
// must happen before the first session. Call recover once the link is up.
func openAgentNode(ctx context.Context, cfg Config, nodeID string, link *noderpc.Link, mux *nodelink.Mux, errOut io.Writer, log *slog.Logger) (*agentNode, error) {
	a := &agentNode{}
	images, err := image.Open(filepath.Join(cfg.DataDir, "images"), log)
	if err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	nets := openNetworks(cfg, log)
	if nets != nil {
		a.closers = append(a.closers, func() { nets.Close() })
	}
	drivers, err := openDrivers(ctx, cfg, nets, errOut, log)
	if err != nil {
		a.close()
		return nil, err
	}
	for _, d := range drivers {
		a.closers = append(a.closers, func() { d.Close() })
	}
	n, err := node.New(node.Config{ID: nodeID, Driver: drivers[0], Runtimes: drivers[1:], Logger: log,
		Images:  &noderpc.PullThrough{Local: images, Link: link},
		Records: noderpc.RemoteRecords(link), SnapshotDir: filepath.Join(cfg.DataDir, "snapshots"),
		Layers: images, Networks: nets})
	if err != nil {
		a.close()
		return nil, err
	}
	a.node = n
	a.closers = append([]func(){func() { n.Close() }}, a.closers...)
	noderpc.ServeNode(mux, n)
	return a, nil
}

// openSimNode builds a simulated node nodeID (den agent --sim).
func openSimNode(nodeID string, link *noderpc.Link, mux *nodelink.Mux, log *slog.Logger) (*agentNode, error) {
	drv := sim.New()
	n, err := node.New(node.Config{ID: nodeID, Driver: drv, Images: simImages{}, Records: noderpc.RemoteRecords(link), Logger: log})
	if err != nil {
		drv.Close()
		return nil, err
	}
	noderpc.ServeNode(mux, n)
	return &agentNode{node: n, closers: []func(){func() { n.Close() }, func() { drv.Close() }}}, nil
}

// simImages resolves every image: the simulator reads none.
type simImages struct{}

func (simImages) Rootfs(ref string) (driver.Image, error) { return driver.Image{Ref: ref}, nil }

// recover reattaches the node's sandboxes (after an agent restart): the
// link must be up, since the records are on the servers.
func (a *agentNode) recover(ctx context.Context) error { return a.node.Recover(ctx) }

func (a *agentNode) close() {
	for _, c := range a.closers {
		c()
	}
}
