package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/denhq/den/internal/errdefs"
)

// apply commits one command through raft and waits until the FSM has
// applied it. It returns the entry's index, or the FSM's classified
// rejection. ctx bounds only the wait to enqueue the entry: raft offers no
// way to abandon a committed one.
func (s *Store) apply(ctx context.Context, t cmdType, body any) (uint64, error) {
	if s.closed.Load() {
		return 0, errdefs.New(errdefs.Unavailable, "%s: store is closed", t)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("%s: %w", t, err)
	}
	data, err := encodeCmd(t, body)
	if err != nil {
		return 0, errdefs.Wrap(errdefs.InvalidArgument, err, "%s", t)
	}
	if s.cluster != nil {
		idx, err := s.cluster.apply(ctx, data)
		if err != nil && idx == 0 {
			return 0, fmt.Errorf("%s: %w", t, err)
		}
		return idx, err // the FSM's rejection, unwrapped as in den up
	}
	idx, err := s.batch.apply(data, timeoutOf(ctx))
	if err != nil && idx == 0 {
		return 0, fmt.Errorf("%s: %w", t, err)
	}
	return idx, err // the FSM's rejection
}

// CreateSandbox stores a new sandbox. It fails with AlreadyExists when the
// ID exists, or when sb is live and named and its tenant already has a live
// sandbox of that name. An empty State becomes pending and a zero CreatedAt
// becomes now; on success sb carries them and its new ModifyIndex.
func (s *Store) CreateSandbox(ctx context.Context, sb *Sandbox) error {
	if sb == nil {
		return errdefs.New(errdefs.InvalidArgument, "create sandbox: no sandbox")
	}
	c := sb.Clone()
	if c.State == "" {
		c.State = StatePending
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = time.Now()
	}
	c.normalizeTimes()
	if err := validateSandbox(c); err != nil {
		return fmt.Errorf("create sandbox: %w", err)
	}
	idx, err := s.apply(ctx, cmdCreateSandbox, sandboxCmd{Sandbox: c})
	if err != nil {
		return err
	}
	sb.State, sb.CreatedAt, sb.StartedAt, sb.ExpiresAt = c.State, c.CreatedAt, c.StartedAt, c.ExpiresAt
	sb.SuspendedAt = c.SuspendedAt
	sb.ModifyIndex = idx
	return nil
}

// UpdateSandbox replaces a stored sandbox if it is unchanged since it was
// read: sb.ModifyIndex must equal the stored index, else Conflict (re-read
// and retry). NotFound when absent; AlreadyExists when the update would
// give a tenant two live sandboxes of one name. On success sb.ModifyIndex is
// the new index.
func (s *Store) UpdateSandbox(ctx context.Context, sb *Sandbox) error {
	if sb == nil {
		return errdefs.New(errdefs.InvalidArgument, "update sandbox: no sandbox")
	}
	c := sb.Clone()
	c.normalizeTimes()
	if err := validateSandbox(c); err != nil {
		return fmt.Errorf("update sandbox: %w", err)
	}
	idx, err := s.apply(ctx, cmdUpdateSandbox, sandboxCmd{Sandbox: c})
	if err != nil {
		return err
	}
	sb.CreatedAt, sb.StartedAt, sb.ExpiresAt, sb.SuspendedAt = c.CreatedAt, c.StartedAt, c.ExpiresAt, c.SuspendedAt
	sb.ModifyIndex = idx
	return nil
}

// DeleteSandbox removes a sandbox record; NotFound when absent.
func (s *Store) DeleteSandbox(ctx context.Context, id string) error {
	_, err := s.apply(ctx, cmdDeleteSandbox, idCmd{ID: id})
	return err
}

// PutAPIKey creates or replaces the key with k.ID. AlreadyExists when
// another key has the same hash. A zero CreatedAt becomes now (and is set
// on k).
func (s *Store) PutAPIKey(ctx context.Context, k *APIKey) error {
	if k == nil {
		return errdefs.New(errdefs.InvalidArgument, "put api key: no key")
	}
	c := k.Clone()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = time.Now()
	}
	c.CreatedAt = normalTime(c.CreatedAt)
	if c.ID == "" || c.Hash == "" {
		return errdefs.New(errdefs.InvalidArgument, "put api key: id and hash are required")
	}
	if _, err := s.apply(ctx, cmdPutAPIKey, apiKeyCmd{Key: c}); err != nil {
		return err
	}
	k.CreatedAt = c.CreatedAt
	return nil
}

// DeleteAPIKey removes a key; NotFound when absent.
func (s *Store) DeleteAPIKey(ctx context.Context, id string) error {
	_, err := s.apply(ctx, cmdDeleteAPIKey, idCmd{ID: id})
	return err
}

// validateSandbox checks what the FSM relies on.
func validateSandbox(sb *Sandbox) error {
	switch {
	case sb.ID == "":
		return errdefs.New(errdefs.InvalidArgument, "sandbox id is required")
	case sb.Tenant == "":
		return errdefs.New(errdefs.InvalidArgument, "sandbox %s: tenant is required", sb.ID)
	case !ValidState(sb.State):
		return errdefs.New(errdefs.InvalidArgument, "sandbox %s: unknown state %q", sb.ID, sb.State)
	case len(sb.Handle) > 0 && !json.Valid(sb.Handle):
		return errdefs.New(errdefs.InvalidArgument, "sandbox %s: handle is not valid JSON", sb.ID)
	case !ValidAction(sb.TimeoutAction) || !ValidAction(sb.IdleAction):
		return errdefs.New(errdefs.InvalidArgument, "sandbox %s: unknown action %q or %q", sb.ID, sb.TimeoutAction, sb.IdleAction)
	case sb.TimeoutSec < 0 || sb.IdleTimeoutSec < 0 || sb.TimeoutLeftMs < 0:
		return errdefs.New(errdefs.InvalidArgument, "sandbox %s: negative timeout", sb.ID)
	}
	return nil
}

// CreateSandboxSnapshot records a complete snapshot. AlreadyExists when
// the ID exists or the tenant has a snapshot of that name. A zero
// CreatedAt becomes now; on success s carries it and its ModifyIndex.
func (s *Store) CreateSandboxSnapshot(ctx context.Context, snap *SandboxSnapshot) error {
	if snap == nil {
		return errdefs.New(errdefs.InvalidArgument, "create snapshot: no snapshot")
	}
	c := snap.Clone()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = time.Now()
	}
	c.CreatedAt = normalTime(c.CreatedAt)
	if err := validateSnapshot(c); err != nil {
		return fmt.Errorf("create snapshot: %w", err)
	}
	idx, err := s.apply(ctx, cmdCreateSnapshot, snapshotCmd{Snapshot: c})
	if err != nil {
		return err
	}
	snap.CreatedAt, snap.ModifyIndex = c.CreatedAt, idx
	return nil
}

// DeleteSandboxSnapshot removes a snapshot record; NotFound when absent.
func (s *Store) DeleteSandboxSnapshot(ctx context.Context, id string) error {
	_, err := s.apply(ctx, cmdDeleteSnapshot, idCmd{ID: id})
	return err
}
