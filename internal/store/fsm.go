package store

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"

	"github.com/denhq/den/internal/errdefs"
)

// fsm applies committed log entries to the in-memory database. Apply,
// Snapshot and Restore are called by raft from one goroutine; readers use
// db.Snapshot concurrently, which memdb allows.
//
// Invariants: Apply is deterministic (its result depends only on the entry
// and the prior state), and every object it inserts is freshly decoded and
// never mutated afterwards.
type fsm struct {
	db  *memdb.MemDB
	log *slog.Logger

	// applied is the index of the last command applied (or restored from
	// a snapshot); changed is closed and replaced whenever it grows. A
	// server that forwarded a write waits on them to read its own write.
	mu      sync.Mutex
	applied uint64
	changed chan struct{}
}

var _ raft.FSM = (*fsm)(nil)

func newFSM(log *slog.Logger) (*fsm, error) {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return nil, fmt.Errorf("new fsm: %w", err)
	}
	return &fsm{db: db, log: log, changed: make(chan struct{})}, nil
}

// applyResult is what Apply returns to the writer through the ApplyFuture.
type applyResult struct {
	Index uint64 // raft index of the entry
	Err   error  // classified rejection; the state is unchanged when set
	// Batch holds the result of each command of a cmdBatch entry, in order.
	Batch []error
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	res := &applyResult{Index: l.Index}
	t, body, err := decodeCmd(l.Data)
	switch {
	case err != nil:
	case t == cmdBatch:
		res.Batch, err = f.applyBatch(l.Index, body)
	default:
		err = f.applyCmd(l.Index, t, body)
	}
	if err != nil && errdefs.KindOf(err) == errdefs.Internal {
		f.log.Warn("raft entry not applied", "index", l.Index, "error", err)
	}
	res.Err = err
	f.setApplied(l.Index)
	return res
}

// applyBatch applies each command of a cmdBatch entry in order, each on its
// own (one refused leaves the others applied), and returns their results.
// A batch of sandbox commands only, the bulk of a busy cluster's entries,
// is applied in one memdb transaction (see applySandboxBatch).
func (f *fsm) applyBatch(index uint64, body []byte) ([]error, error) {
	cmds, err := decodeBatch(body)
	if err != nil {
		return nil, err
	}
	if errs, ok := f.applySandboxBatch(index, cmds); ok {
		return errs, nil
	}
	errs := make([]error, len(cmds))
	for i, data := range cmds {
		t, body, err := decodeCmd(data)
		if err == nil && t == cmdBatch {
			err = fmt.Errorf("apply: a batch inside a batch")
		}
		if err == nil {
			err = f.applyCmd(index, t, body)
		}
		if err != nil && errdefs.KindOf(err) == errdefs.Internal {
			f.log.Warn("raft batch command not applied", "index", index, "command", i, "error", err)
		}
		errs[i] = err
	}
	return errs, nil
}

// applySandboxBatch applies a batch whose commands all create, update or
// delete sandboxes in one memdb transaction: each radix-tree node that
// several commands touch is copied once, not once per command. A refused
// command of those kinds has changed nothing when it is refused (each
// checks, then makes its one insert or delete), so it leaves the others
// applied as on their own. A command that fails otherwise (an Internal
// error, which may come half way) discards the transaction, and ok is
// false: the caller applies the batch one command at a time, as every
// server does alike.
func (f *fsm) applySandboxBatch(index uint64, cmds [][]byte) (errs []error, ok bool) {
	type cmd struct {
		t    cmdType
		body []byte
	}
	parsed := make([]cmd, len(cmds))
	for i, data := range cmds {
		t, body, err := decodeCmd(data)
		if err != nil || (t != cmdCreateSandbox && t != cmdUpdateSandbox && t != cmdDeleteSandbox) {
			return nil, false
		}
		parsed[i] = cmd{t, body}
	}
	txn := f.db.Txn(true)
	defer txn.Abort()
	errs = make([]error, len(parsed))
	for i, c := range parsed {
		err := applyIn(txn, index, c.t, c.body)
		if err != nil && errdefs.KindOf(err) == errdefs.Internal {
			return nil, false
		}
		errs[i] = err
	}
	txn.Commit()
	return errs, true
}

// setApplied records that the state includes index and wakes waiters.
func (f *fsm) setApplied(index uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if index <= f.applied {
		return
	}
	f.applied = index
	close(f.changed)
	f.changed = make(chan struct{})
}

// appliedIndex returns the last applied index and a channel closed when it
// next grows.
func (f *fsm) appliedIndex() (uint64, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied, f.changed
}

// waitApplied returns once the state includes index, or ctx's error.
func (f *fsm) waitApplied(ctx context.Context, index uint64) error {
	for {
		cur, changed := f.appliedIndex()
		if cur >= index {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return errdefs.Wrap(errdefs.Unavailable, ctx.Err(),
				"wait for this server to apply index %d (at %d)", index, cur)
		}
	}
}

func (f *fsm) applyCmd(index uint64, t cmdType, body []byte) error {
	txn := f.db.Txn(true)
	defer txn.Abort()
	if err := applyIn(txn, index, t, body); err != nil {
		return err
	}
	txn.Commit()
	return nil
}

// applyIn applies one command within txn; the caller commits.
func applyIn(txn *memdb.Txn, index uint64, t cmdType, body []byte) error {
	var err error
	switch t {
	case cmdCreateSandbox:
		err = applyCreateSandbox(txn, index, body)
	case cmdUpdateSandbox:
		err = applyUpdateSandbox(txn, index, body)
	case cmdDeleteSandbox:
		err = applyDelete(txn, tableSandboxes, "sandbox", body)
	case cmdPutAPIKey:
		err = applyPutAPIKey(txn, body)
	case cmdDeleteAPIKey:
		err = applyDelete(txn, tableAPIKeys, "api key", body)
	case cmdCreateSnapshot:
		err = applyCreateSnapshot(txn, index, body)
	case cmdDeleteSnapshot:
		err = applyDelete(txn, tableSnapshots, "snapshot", body)
	case cmdPutPool:
		err = applyPutPool(txn, index, body)
	case cmdDeletePool:
		err = applyDelete(txn, tablePools, "pool", body)
	case cmdPutTenant:
		err = applyPutTenant(txn, index, body)
	case cmdDeleteTenant:
		err = applyDeleteTenant(txn, body)
	case cmdPutSSHKey:
		err = applyPutSSHKey(txn, index, body)
	case cmdDeleteSSHKey:
		err = applyDelete(txn, tableSSHKeys, "ssh key", body)
	case cmdPutJoinToken:
		err = applyPutJoinToken(txn, index, body)
	case cmdDeleteJoinToken:
		err = applyDelete(txn, tableJoinTokens, "join token", body)
	case cmdJoinNode:
		err = applyJoinNode(txn, index, body)
	case cmdNodeUp:
		err = applyNodeUp(txn, index, body)
	case cmdNodeDown:
		err = applyNodeDown(txn, index, body)
	case cmdSetNodeDraining:
		err = applySetNodeDraining(txn, index, body)
	case cmdDeleteNode:
		err = applyDelete(txn, tableNodes, "node", body)
	case cmdPutClusterCA:
		err = applyPutClusterCA(txn, index, body)
	case cmdJoinServer:
		err = applyJoinServer(txn, index, body)
	case cmdRotateClusterCA:
		err = applyRotateClusterCA(txn, index, body)
	default:
		err = fmt.Errorf("apply: unknown command type %d", byte(t))
	}
	return err
}

func decodeBody(t cmdType, body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("apply %s: decode: %w", t, err)
	}
	return nil
}

func applyCreateSandbox(txn *memdb.Txn, index uint64, body []byte) error {
	var c sandboxCmd
	if err := decodeBody(cmdCreateSandbox, body, &c); err != nil {
		return err
	}
	sb := c.Sandbox
	if sb == nil || sb.ID == "" {
		return errdefs.New(errdefs.InvalidArgument, "sandbox id is required")
	}
	old, err := txn.First(tableSandboxes, indexID, sb.ID)
	if err != nil {
		return fmt.Errorf("apply create sandbox %s: %w", sb.ID, err)
	}
	if old != nil {
		return errdefs.New(errdefs.AlreadyExists, "sandbox %s already exists", sb.ID)
	}
	return insertSandbox(txn, index, sb)
}

func applyUpdateSandbox(txn *memdb.Txn, index uint64, body []byte) error {
	var c sandboxCmd
	if err := decodeBody(cmdUpdateSandbox, body, &c); err != nil {
		return err
	}
	sb := c.Sandbox
	if sb == nil || sb.ID == "" {
		return errdefs.New(errdefs.InvalidArgument, "sandbox id is required")
	}
	raw, err := txn.First(tableSandboxes, indexID, sb.ID)
	if err != nil {
		return fmt.Errorf("apply update sandbox %s: %w", sb.ID, err)
	}
	if raw == nil {
		return errdefs.New(errdefs.NotFound, "sandbox %s not found", sb.ID)
	}
	if cur := raw.(*Sandbox).ModifyIndex; cur != sb.ModifyIndex {
		return errdefs.New(errdefs.Conflict,
			"sandbox %s was modified: index %d, expected %d", sb.ID, cur, sb.ModifyIndex)
	}
	return insertSandbox(txn, index, sb)
}

// insertSandbox enforces name uniqueness among live sandboxes, stamps the
// index and inserts sb, which the caller must not touch afterwards.
func insertSandbox(txn *memdb.Txn, index uint64, sb *Sandbox) error {
	if err := checkNameFree(txn, sb); err != nil {
		return err
	}
	sb.ModifyIndex = index
	if err := txn.Insert(tableSandboxes, sb); err != nil {
		return fmt.Errorf("insert sandbox %s: %w", sb.ID, err)
	}
	return nil
}

// checkNameFree fails with AlreadyExists when sb is live and named and
// another live sandbox of the tenant has the same name.
func checkNameFree(txn *memdb.Txn, sb *Sandbox) error {
	if sb.Name == "" || IsTerminal(sb.State) {
		return nil
	}
	it, err := txn.Get(tableSandboxes, indexName, sb.Tenant, sb.Name)
	if err != nil {
		return fmt.Errorf("check name of sandbox %s: %w", sb.ID, err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		other := raw.(*Sandbox)
		if other.ID != sb.ID && !IsTerminal(other.State) {
			return errdefs.New(errdefs.AlreadyExists,
				"sandbox name %q is taken by sandbox %s", sb.Name, other.ID)
		}
	}
	return nil
}

func applyDelete(txn *memdb.Txn, table, what string, body []byte) error {
	var c idCmd
	if err := json.Unmarshal(body, &c); err != nil {
		return fmt.Errorf("apply delete %s: decode: %w", what, err)
	}
	raw, err := txn.First(table, indexID, c.ID)
	if err != nil {
		return fmt.Errorf("apply delete %s %s: %w", what, c.ID, err)
	}
	if raw == nil {
		return errdefs.New(errdefs.NotFound, "%s %s not found", what, c.ID)
	}
	if err := txn.Delete(table, raw); err != nil {
		return fmt.Errorf("apply delete %s %s: %w", what, c.ID, err)
	}
	return nil
}

func applyPutAPIKey(txn *memdb.Txn, body []byte) error {
	var c apiKeyCmd
	if err := decodeBody(cmdPutAPIKey, body, &c); err != nil {
		return err
	}
	k := c.Key
	if k == nil || k.ID == "" || k.Hash == "" {
		return errdefs.New(errdefs.InvalidArgument, "api key id and hash are required")
	}
	raw, err := txn.First(tableAPIKeys, indexHash, k.Hash)
	if err != nil {
		return fmt.Errorf("apply put api key %s: %w", k.ID, err)
	}
	if raw != nil && raw.(*APIKey).ID != k.ID {
		return errdefs.New(errdefs.AlreadyExists, "api key hash is already used by key %s", raw.(*APIKey).ID)
	}
	if err := txn.Insert(tableAPIKeys, k); err != nil {
		return fmt.Errorf("apply put api key %s: %w", k.ID, err)
	}
	return nil
}
