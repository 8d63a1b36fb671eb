package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/denhq/den/internal/errdefs"
)

// Forming a cluster. A fresh server with BootstrapExpect N says hello to
// its Join addresses every formPoll; each hello tells both sides of the
// other and of every server the other knows. Once a server knows N servers
// (itself included) it bootstraps raft with exactly those N, sorted by ID.
// With exactly N fresh servers every one of them ends up knowing the same
// N and writes the same configuration, which raft accepts from several
// servers at once. A server that learns a peer is already in a cluster
// joins it instead, as does a fresh server without BootstrapExpect.

// formPoll is how often a forming server asks its peers again.
const formPoll = 500 * time.Millisecond

// discovery is the set of servers a forming server knows.
type discovery struct {
	mu    sync.Mutex
	peers map[string]peer // by ID
}

func newDiscovery(self peer) *discovery {
	return &discovery{peers: map[string]peer{self.ID: self}}
}

func (d *discovery) add(p peer) {
	if p.ID == "" || p.Addr == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.peers[p.ID] = p
}

// list is the known servers sorted by ID.
func (d *discovery) list() []peer {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]peer, 0, len(d.peers))
	for _, p := range d.peers {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b peer) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// form makes a fresh server part of a cluster: bootstrap with
// BootstrapExpect, else join. hasState: raft already has state, and raft
// knows its peers.
func (c *cluster) form(ctx context.Context, hasState bool) error {
	if hasState {
		c.log.Info("cluster: restarting with existing state; raft knows the peers")
		return nil
	}
	if c.cfg.BootstrapExpect > 0 {
		return c.bootstrapExpect(ctx)
	}
	return c.join(ctx)
}

// bootstrapExpect discovers servers until it knows BootstrapExpect of
// them, then bootstraps; it joins instead when a peer already has a
// cluster, and stops when a leader reached this server first.
func (c *cluster) bootstrapExpect(ctx context.Context) error {
	n := c.cfg.BootstrapExpect
	c.log.Info("cluster: waiting for servers to bootstrap", "bootstrap_expect", n, "join", c.cfg.Join)
	for {
		if c.inCluster() {
			return nil
		}
		joinInstead := c.helloAll(ctx)
		if joinInstead {
			c.log.Info("cluster: a peer is already in a cluster; joining it")
			return c.join(ctx)
		}
		known := c.disc.list()
		if len(known) > n {
			return errdefs.New(errdefs.FailedPrecondition,
				"found %d servers (%s), more than --bootstrap-expect %d: give every server of the first cluster the same --bootstrap-expect, and start later servers with --join only",
				len(known), peerIDs(known), n)
		}
		if len(known) == n {
			return c.bootstrap(known)
		}
		select {
		case <-time.After(formPoll):
		case <-ctx.Done():
			return errdefs.Wrap(errdefs.Unavailable, ctx.Err(),
				"found %d of the %d servers of --bootstrap-expect (%s): start the others with --join %s",
				len(known), n, peerIDs(known), c.cfg.Advertise)
		}
	}
}

// helloAll says hello to every Join address and reports whether one of
// them is already in a cluster. Unreachable addresses are skipped: they
// may not have started yet.
func (c *cluster) helloAll(ctx context.Context) (inCluster bool) {
	for _, addr := range c.cfg.Join {
		if addr == c.cfg.Advertise {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := c.client.call(cctx, addr, rpcRequest{Op: opHello})
		cancel()
		if err != nil {
			c.log.Debug("cluster: hello failed", "addr", addr, "error", err)
			continue
		}
		if err := resp.err(); err != nil {
			c.log.Warn("cluster: hello refused", "addr", addr, "error", err)
			continue
		}
		for _, p := range resp.Known {
			c.disc.add(p)
		}
		if resp.InCluster {
			return true
		}
	}
	return false
}

func (c *cluster) bootstrap(servers []peer) error {
	var conf raft.Configuration
	for _, p := range servers {
		conf.Servers = append(conf.Servers, raft.Server{
			Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr),
		})
	}
	err := c.raft.BootstrapCluster(conf).Error()
	if errors.Is(err, raft.ErrCantBootstrap) {
		return nil // a leader reached this server first
	}
	if err != nil {
		return err
	}
	c.log.Info("cluster: bootstrapped", "servers", peerIDs(servers))
	return nil
}

// join asks the Join addresses, or the leader they name, to add this
// server as a voter, until one does or ctx ends.
func (c *cluster) join(ctx context.Context) error {
	c.log.Info("cluster: joining", "join", c.cfg.Join)
	var last error
	for {
		if err := c.joinOnce(ctx); err == nil {
			c.log.Info("cluster: joined")
			return nil
		} else {
			last = err
			c.log.Info("cluster: join failed, retrying", "error", err)
		}
		select {
		case <-time.After(formPoll):
		case <-ctx.Done():
			return errdefs.Wrap(errdefs.Unavailable, last, "join the cluster through %s", strings.Join(c.cfg.Join, ","))
		}
	}
}

func (c *cluster) joinOnce(ctx context.Context) error {
	var errs []error
	for _, addr := range c.cfg.Join {
		if addr == c.cfg.Advertise {
			continue
		}
		for hop := 0; hop < 2 && addr != ""; hop++ {
			cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
			resp, err := c.client.call(cctx, addr, rpcRequest{Op: opJoin})
			cancel()
			switch {
			case err != nil:
				errs = append(errs, err)
				addr = ""
			case resp.NotLeader:
				if resp.Leader.Addr == "" {
					errs = append(errs, errdefs.New(errdefs.Unavailable, "the server at %s knows no leader yet", addr))
				}
				addr = resp.Leader.Addr // ask the leader it names
			case resp.err() != nil:
				errs = append(errs, resp.err())
				addr = ""
			default:
				return nil
			}
		}
	}
	if len(errs) == 0 {
		return errdefs.New(errdefs.InvalidArgument, "no address to join: --join names only this server")
	}
	return errors.Join(errs...)
}

func peerIDs(ps []peer) string {
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.ID
	}
	return strings.Join(ids, ",")
}
