package store

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/raft"

	"github.com/denhq/den/internal/errdefs"
)

// leaderPoll is how often a write that waits for a leader looks again.
// Elections take hundreds of milliseconds; 10 ms adds little to them.
const leaderPoll = 10 * time.Millisecond

// apply commits data on the leader, here or over the cluster port, and
// returns once this server's FSM has applied it (a write is readable on
// the server that took it). While no leader is known it waits up to the
// configured LeaderWait, then fails Unavailable. A write is retried only
// when it certainly was not applied (no leader took it); an ambiguous
// failure (the leader died with the write in flight) is returned as
// Unavailable and may or may not have been applied.
func (c *cluster) apply(ctx context.Context, data []byte) (uint64, error) {
	wait := c.cfg.leaderWait()
	deadline := time.Now().Add(wait)
	for {
		idx, retry, err := c.applyOnce(ctx, data)
		if !retry {
			return idx, err
		}
		if time.Now().After(deadline) {
			if err != nil {
				return 0, errdefs.Wrap(errdefs.Unavailable, err, "%s", errNoLeader(wait))
			}
			return 0, errNoLeader(wait)
		}
		select {
		case <-time.After(leaderPoll):
		case <-ctx.Done():
			return 0, errdefs.Wrap(errdefs.Unavailable, ctx.Err(), "wait for a raft leader")
		}
	}
}

// applyOnce tries once; retry means nothing was applied and a later try
// may succeed (no leader yet, or the leader changed).
func (c *cluster) applyOnce(ctx context.Context, data []byte) (idx uint64, retry bool, err error) {
	if c.raft.State() == raft.Leader {
		idx, err := c.batch.apply(data, timeoutOf(ctx))
		if errors.Is(err, raft.ErrNotLeader) {
			return 0, true, nil
		}
		return idx, false, err
	}
	l, ok := c.leader()
	if !ok || l.ID == c.id {
		return 0, true, nil
	}
	resp, err := c.client.call(ctx, l.Addr, rpcRequest{Op: opApply, Cmd: data})
	if errors.Is(err, errNotSent) {
		return 0, true, err
	}
	if err != nil {
		c.client.forget(l.Addr)
		return 0, false, errdefs.Wrap(errdefs.Unavailable, err,
			"forward write to leader %s: the write may or may not have been applied", l.ID)
	}
	if resp.NotLeader {
		return 0, true, nil
	}
	if resp.Index == 0 {
		return 0, false, resp.err()
	}
	if err := c.fsm.waitApplied(ctx, resp.Index); err != nil {
		return 0, false, err
	}
	return resp.Index, false, resp.err()
}

// syncWithLeader waits until a leader is known and this server has applied
// everything committed before the wait: after it, reads here see every
// write acknowledged before Open returned.
func (c *cluster) syncWithLeader(ctx context.Context) error {
	for {
		retry, err := c.syncOnce(ctx)
		if !retry {
			return err
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			if err != nil {
				return errdefs.Wrap(errdefs.Unavailable, err, "no raft leader")
			}
			return errdefs.Wrap(errdefs.Unavailable, ctx.Err(), "no raft leader")
		}
	}
}

// syncOnce tries once; retry means it did not get there and a later try
// may (no leader yet, or the leader changed).
func (c *cluster) syncOnce(ctx context.Context) (retry bool, err error) {
	if c.raft.State() == raft.Leader {
		err := mapRaftErr(c.raft.Barrier(timeoutOf(ctx)).Error())
		return errors.Is(err, raft.ErrNotLeader), err
	}
	l, ok := c.leader()
	if !ok || l.ID == c.id {
		return true, nil
	}
	resp, err := c.client.call(ctx, l.Addr, rpcRequest{Op: opBarrier})
	if err != nil {
		return true, err
	}
	if resp.NotLeader || resp.err() != nil {
		return true, resp.err()
	}
	return false, c.fsm.waitApplied(ctx, resp.Index)
}

// catchUp is syncWithLeader bounded by the leader wait of writes.
func (c *cluster) catchUp(ctx context.Context) error {
	wait := c.cfg.leaderWait()
	deadline := time.Now().Add(wait)
	for {
		retry, err := c.syncOnce(ctx)
		if !retry {
			return err
		}
		if time.Now().After(deadline) {
			if err != nil {
				return errdefs.Wrap(errdefs.Unavailable, err, "%s", errNoLeader(wait))
			}
			return errNoLeader(wait)
		}
		select {
		case <-time.After(leaderPoll):
		case <-ctx.Done():
			return errdefs.Wrap(errdefs.Unavailable, ctx.Err(), "wait for a raft leader")
		}
	}
}
