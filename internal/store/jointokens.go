package store

import (
	"context"
	"crypto/subtle"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/denhq/den/internal/errdefs"
)

// JoinToken admits agents to the cluster: an agent presents its ID and
// secret once, with a certificate request, and becomes a node. The store
// keeps only the secret's hash. A data contract persisted in the raft
// log: add fields, never rename or retype them.
type JoinToken struct {
	ID string `json:"id"`
	// Hash is the hex SHA-256 of the secret.
	Hash string `json:"hash"`
	// Uses is how many joins the token admits; Used how many it did.
	Uses int `json:"uses"`
	Used int `json:"used"`
	// Pool and Labels are given to every node the token admits; the
	// token's labels win over the agent's own.
	Pool   string            `json:"pool,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Role is what the token admits: "" agents (nodes), RoleServer
	// servers joining the raft cluster.
	Role string `json:"role,omitempty"`
	// Servers are the servers the token admitted, by the hash of their
	// key: a server that retries a join whose answer it lost is admitted
	// again at no cost.
	Servers []string `json:"servers,omitempty"`
	// ExpiresAt is when the token stops admitting; zero is never.
	ExpiresAt   time.Time `json:"expires_at"`
	CreatedAt   time.Time `json:"created_at"`
	ModifyIndex uint64    `json:"modify_index"`
}

// Clone returns a deep copy of t.
func (t *JoinToken) Clone() *JoinToken {
	if t == nil {
		return nil
	}
	c := *t
	c.Labels = maps.Clone(t.Labels)
	c.Servers = slices.Clone(t.Servers)
	return &c
}

const tableJoinTokens = "join_tokens"

func joinTokensTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableJoinTokens,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
		},
	}
}

// joinTokenCmd is the body of put_join_token.
type joinTokenCmd struct {
	Token *JoinToken `json:"token"`
}

func validateJoinToken(t *JoinToken) error {
	switch {
	case t == nil || t.ID == "":
		return errdefs.New(errdefs.InvalidArgument, "join token id is required")
	case t.Hash == "":
		return errdefs.New(errdefs.InvalidArgument, "join token %s: hash is required", t.ID)
	case t.Uses < 1:
		return errdefs.New(errdefs.InvalidArgument, "join token %s: uses must be at least 1", t.ID)
	case t.Used < 0 || t.Used > t.Uses:
		return errdefs.New(errdefs.InvalidArgument, "join token %s: used %d is outside 0..%d", t.ID, t.Used, t.Uses)
	case t.Role != "" && t.Role != RoleServer:
		return errdefs.New(errdefs.InvalidArgument, "join token %s: role %q is neither agents (\"\") nor %q", t.ID, t.Role, RoleServer)
	case t.Role == RoleServer && (t.Pool != "" || len(t.Labels) > 0):
		return errdefs.New(errdefs.InvalidArgument, "join token %s: a server token takes no pool or labels", t.ID)
	}
	return nil
}

func applyPutJoinToken(txn *memdb.Txn, index uint64, body []byte) error {
	var c joinTokenCmd
	if err := decodeBody(cmdPutJoinToken, body, &c); err != nil {
		return err
	}
	if err := validateJoinToken(c.Token); err != nil {
		return err
	}
	c.Token.ModifyIndex = index
	if err := txn.Insert(tableJoinTokens, c.Token); err != nil {
		return fmt.Errorf("apply put join token %s: %w", c.Token.ID, err)
	}
	return nil
}

// checkJoinToken finds a presented token and checks its secret and its
// expiry. An unknown ID and a wrong secret read the same, so the refusal
// tells a guesser nothing.
func checkJoinToken(txn *memdb.Txn, id, hash string, now time.Time) (*JoinToken, error) {
	raw, err := txn.First(tableJoinTokens, indexID, id)
	if err != nil {
		return nil, fmt.Errorf("find join token %s: %w", id, err)
	}
	if raw == nil || subtle.ConstantTimeCompare([]byte(raw.(*JoinToken).Hash), []byte(hash)) != 1 {
		return nil, errdefs.New(errdefs.PermissionDenied, "join token %s is not valid", id)
	}
	t := raw.(*JoinToken).Clone()
	if !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt) {
		return nil, errdefs.New(errdefs.PermissionDenied, "join token %s expired at %s", id, t.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return t, nil
}

// useJoinToken counts one use of t (from checkJoinToken), in the join's
// transaction: raft applies entries one at a time, so a token of N uses
// admits exactly N joins however they race.
func useJoinToken(txn *memdb.Txn, index uint64, t *JoinToken) error {
	if t.Used >= t.Uses {
		return errdefs.New(errdefs.PermissionDenied, "join token %s is used up (%d of %d joins)", t.ID, t.Used, t.Uses)
	}
	t.Used++
	t.ModifyIndex = index
	if err := txn.Insert(tableJoinTokens, t); err != nil {
		return fmt.Errorf("use join token %s: %w", t.ID, err)
	}
	return nil
}

// PutJoinToken records a join token. A zero CreatedAt becomes now; on
// success t carries it and its ModifyIndex.
func (s *Store) PutJoinToken(ctx context.Context, t *JoinToken) error {
	if t == nil {
		return errdefs.New(errdefs.InvalidArgument, "put join token: no token")
	}
	c := t.Clone()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = time.Now()
	}
	c.CreatedAt, c.ExpiresAt = normalTime(c.CreatedAt), normalTime(c.ExpiresAt)
	if err := validateJoinToken(c); err != nil {
		return fmt.Errorf("put join token: %w", err)
	}
	idx, err := s.apply(ctx, cmdPutJoinToken, joinTokenCmd{Token: c})
	if err != nil {
		return err
	}
	t.CreatedAt, t.ExpiresAt, t.ModifyIndex = c.CreatedAt, c.ExpiresAt, idx
	return nil
}

// DeleteJoinToken removes a join token; NotFound when absent. Nodes it
// admitted stay.
func (s *Store) DeleteJoinToken(ctx context.Context, id string) error {
	_, err := s.apply(ctx, cmdDeleteJoinToken, idCmd{ID: id})
	return err
}

// JoinToken returns the join token with the ID; NotFound when absent.
func (sn *Snapshot) JoinToken(id string) (*JoinToken, error) {
	raw, err := sn.db.Txn(false).First(tableJoinTokens, indexID, id)
	if err != nil {
		return nil, fmt.Errorf("get join token %s: %w", id, err)
	}
	if raw == nil {
		return nil, errdefs.New(errdefs.NotFound, "join token %s not found", id)
	}
	return raw.(*JoinToken).Clone(), nil
}

// JoinTokens lists the join tokens ordered by (CreatedAt, ID).
func (sn *Snapshot) JoinTokens() ([]*JoinToken, error) {
	it, err := sn.db.Txn(false).Get(tableJoinTokens, indexID)
	if err != nil {
		return nil, fmt.Errorf("list join tokens: %w", err)
	}
	var out []*JoinToken
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*JoinToken).Clone())
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// RoleServer is the role of join tokens that admit servers.
const RoleServer = "server"

// joinServerCmd is the body of join_server: a server admitted by a token.
type joinServerCmd struct {
	TokenID   string    `json:"token_id"`
	TokenHash string    `json:"token_hash"`
	Now       time.Time `json:"now"`
	// KeyHash names the joining server's key.
	KeyHash string `json:"key_hash"`
}

func applyJoinServer(txn *memdb.Txn, index uint64, body []byte) error {
	var c joinServerCmd
	if err := decodeBody(cmdJoinServer, body, &c); err != nil {
		return err
	}
	if c.KeyHash == "" {
		return errdefs.New(errdefs.InvalidArgument, "join server: the key hash is required")
	}
	tok, err := checkJoinToken(txn, c.TokenID, c.TokenHash, c.Now)
	if err != nil {
		return err
	}
	if tok.Role != RoleServer {
		return errdefs.New(errdefs.PermissionDenied, "join token %s admits agents, not servers: make one with den token create --server", tok.ID)
	}
	if slices.Contains(tok.Servers, c.KeyHash) {
		return nil // the same server retrying
	}
	tok.Servers = append(tok.Servers, c.KeyHash)
	return useJoinToken(txn, index, tok)
}

// JoinServer counts one use of a server join token for the server whose
// key hashes to keyHash (a retry of the same key costs nothing). The
// token's secret, expiry, role and uses are checked atomically.
func (s *Store) JoinServer(ctx context.Context, tokenID, tokenHash string, now time.Time, keyHash string) error {
	_, err := s.apply(ctx, cmdJoinServer, joinServerCmd{TokenID: tokenID, TokenHash: tokenHash, Now: normalTime(now), KeyHash: keyHash})
	return err
}
