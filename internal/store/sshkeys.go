package store

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/denhq/den/internal/errdefs"
)

// SSHKey is an SSH public key of a tenant: the SSH gateway lets its holder
// log in to the tenant's sandboxes. A data contract persisted in the raft
// log: add fields, never rename or retype them.
type SSHKey struct {
	ID     string `json:"id"`
	Tenant string `json:"tenant"`
	// Name is unique within the tenant.
	Name string `json:"name"`
	// PublicKey is the key as one authorized_keys line ("ssh-ed25519
	// AAAA... comment").
	PublicKey string `json:"public_key"`
	// Fingerprint is the key's SHA256 fingerprint ("SHA256:..."), as
	// ssh-keygen -l prints it; unique within the tenant.
	Fingerprint string    `json:"fingerprint"`
	CreatedAt   time.Time `json:"created_at"`
	ModifyIndex uint64    `json:"modify_index"`
}

// Clone returns a copy of k.
func (k *SSHKey) Clone() *SSHKey {
	if k == nil {
		return nil
	}
	c := *k
	return &c
}

// Table and indexes of SSH keys.
const (
	tableSSHKeys      = "ssh_keys"
	indexFingerprint  = "fingerprint"        // Fingerprint, non-unique: one key may serve several tenants
	indexTenantFinger = "tenant_fingerprint" // (Tenant, Fingerprint), unique
)

// sshKeysTable is the schema of the ssh_keys table.
func sshKeysTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableSSHKeys,
		Indexes: map[string]*memdb.IndexSchema{
			indexID:          {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
			indexName:        {Name: indexName, Unique: true, Indexer: tenantFieldIndexer("Name")},
			indexFingerprint: {Name: indexFingerprint, Indexer: &memdb.StringFieldIndex{Field: "Fingerprint"}},
			indexTenant:      {Name: indexTenant, Indexer: &memdb.StringFieldIndex{Field: "Tenant"}},
			indexTenantFinger: {Name: indexTenantFinger, Unique: true,
				Indexer: tenantFieldIndexer("Fingerprint")},
			indexCreated: {Name: indexCreated, Unique: true, Indexer: sshKeyCreatedIndexer{}},
		},
	}
}

// tenantFieldIndexer indexes by (Tenant, field). Args: tenant, value.
func tenantFieldIndexer(field string) memdb.Indexer {
	return &memdb.CompoundIndex{Indexes: []memdb.Indexer{
		&memdb.StringFieldIndex{Field: "Tenant"},
		&memdb.StringFieldIndex{Field: field},
	}}
}

// sshKeyCreatedIndexer orders SSH keys by (CreatedAt, ID).
type sshKeyCreatedIndexer struct{}

func (sshKeyCreatedIndexer) FromObject(obj any) (bool, []byte, error) {
	k, ok := obj.(*SSHKey)
	if !ok {
		return false, nil, fmt.Errorf("ssh key created index: unexpected %T", obj)
	}
	return true, append(appendTime(nil, k.CreatedAt), k.ID...), nil
}

func (sshKeyCreatedIndexer) FromArgs(args ...any) ([]byte, error) {
	return createdIndexer{}.FromArgs(args...)
}

// sshKeyCmd is the body of put_ssh_key.
type sshKeyCmd struct {
	Key *SSHKey `json:"key"`
}

func validateSSHKey(k *SSHKey) error {
	switch {
	case k == nil || k.ID == "":
		return errdefs.New(errdefs.InvalidArgument, "ssh key id is required")
	case k.Tenant == "":
		return errdefs.New(errdefs.InvalidArgument, "ssh key %s: tenant is required", k.ID)
	case k.Name == "":
		return errdefs.New(errdefs.InvalidArgument, "ssh key %s: name is required", k.ID)
	case k.PublicKey == "" || k.Fingerprint == "":
		return errdefs.New(errdefs.InvalidArgument, "ssh key %s: public key and fingerprint are required", k.ID)
	}
	return nil
}

// applyPutSSHKey creates or replaces an SSH key; its name and its
// fingerprint must stay unique within its tenant.
func applyPutSSHKey(txn *memdb.Txn, index uint64, body []byte) error {
	var c sshKeyCmd
	if err := decodeBody(cmdPutSSHKey, body, &c); err != nil {
		return err
	}
	k := c.Key
	if err := validateSSHKey(k); err != nil {
		return err
	}
	for _, u := range []struct{ index, value, what string }{
		{indexName, k.Name, "ssh key name %q is taken by ssh key %s"},
		{indexTenantFinger, k.Fingerprint, "ssh key %s is already registered as %s"},
	} {
		other, err := txn.First(tableSSHKeys, u.index, k.Tenant, u.value)
		if err != nil {
			return fmt.Errorf("apply put ssh key %s: %w", k.ID, err)
		}
		if other != nil && other.(*SSHKey).ID != k.ID {
			return errdefs.New(errdefs.AlreadyExists, u.what, u.value, other.(*SSHKey).ID)
		}
	}
	k.ModifyIndex = index
	if err := txn.Insert(tableSSHKeys, k); err != nil {
		return fmt.Errorf("apply put ssh key %s: %w", k.ID, err)
	}
	return nil
}

// deleteTenantSSHKeys removes every SSH key of tenant, for the removal
// of the tenant itself (in the same transaction).
func deleteTenantSSHKeys(txn *memdb.Txn, tenant string) error {
	if _, err := txn.DeleteAll(tableSSHKeys, indexTenant, tenant); err != nil {
		return fmt.Errorf("delete the ssh keys of tenant %s: %w", tenant, err)
	}
	return nil
}

// PutSSHKey creates or replaces an SSH key record. A zero CreatedAt
// becomes now; on success k carries it and its ModifyIndex.
func (s *Store) PutSSHKey(ctx context.Context, k *SSHKey) error {
	if k == nil {
		return errdefs.New(errdefs.InvalidArgument, "put ssh key: no key")
	}
	c := k.Clone()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = time.Now()
	}
	c.CreatedAt = normalTime(c.CreatedAt)
	if err := validateSSHKey(c); err != nil {
		return fmt.Errorf("put ssh key: %w", err)
	}
	idx, err := s.apply(ctx, cmdPutSSHKey, sshKeyCmd{Key: c})
	if err != nil {
		return err
	}
	k.CreatedAt, k.ModifyIndex = c.CreatedAt, idx
	return nil
}

// DeleteSSHKey removes an SSH key record; NotFound when absent.
func (s *Store) DeleteSSHKey(ctx context.Context, id string) error {
	_, err := s.apply(ctx, cmdDeleteSSHKey, idCmd{ID: id})
	return err
}

// SSHKey returns the SSH key with the ID; NotFound when absent.
func (sn *Snapshot) SSHKey(id string) (*SSHKey, error) {
	raw, err := sn.db.Txn(false).First(tableSSHKeys, indexID, id)
	if err != nil {
		return nil, fmt.Errorf("get ssh key %s: %w", id, err)
	}
	if raw == nil {
		return nil, errdefs.New(errdefs.NotFound, "ssh key %s not found", id)
	}
	return raw.(*SSHKey).Clone(), nil
}

// SSHKeyByName returns the tenant's SSH key with the name; NotFound when
// none.
func (sn *Snapshot) SSHKeyByName(tenant, name string) (*SSHKey, error) {
	raw, err := sn.db.Txn(false).First(tableSSHKeys, indexName, tenant, name)
	if err != nil {
		return nil, fmt.Errorf("get ssh key by name: %w", err)
	}
	if raw == nil {
		return nil, errdefs.New(errdefs.NotFound, "ssh key named %q not found", name)
	}
	return raw.(*SSHKey).Clone(), nil
}

// SSHKeys lists the tenant's SSH keys (every key when tenant is empty)
// ordered by (CreatedAt, ID).
func (sn *Snapshot) SSHKeys(tenant string) ([]*SSHKey, error) {
	it, err := sn.db.Txn(false).Get(tableSSHKeys, indexCreated)
	if err != nil {
		return nil, fmt.Errorf("list ssh keys: %w", err)
	}
	var out []*SSHKey
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if k := raw.(*SSHKey); tenant == "" || k.Tenant == tenant {
			out = append(out, k.Clone())
		}
	}
	return out, nil
}

// SSHKeysByFingerprint returns every tenant's record of the key with the
// fingerprint (the SSH gateway's lookup at login); none is not an error.
func (sn *Snapshot) SSHKeysByFingerprint(fp string) ([]*SSHKey, error) {
	it, err := sn.db.Txn(false).Get(tableSSHKeys, indexFingerprint, fp)
	if err != nil {
		return nil, fmt.Errorf("find ssh keys by fingerprint: %w", err)
	}
	var out []*SSHKey
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*SSHKey).Clone())
	}
	return out, nil
}
