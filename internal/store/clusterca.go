package store

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-memdb"

	"github.com/denhq/den/internal/errdefs"
)

// ClusterCA is the cluster's certificate authority, kept in the replicated
// state so that every server holds it and whichever leads can sign the
// certificates of joining nodes, as Consul keeps its built-in CA. There is
// one: the first server writes it, and a different one is refused (a server
// started with another CA directory belongs to another cluster). A data
// contract persisted in the raft log: add fields, never rename or retype
// them.
type ClusterCA struct {
	// ID is always clusterCAID (the table's key).
	ID string `json:"id"`
	// CertPEM and KeyPEM are the CA's certificate and private key.
	CertPEM     string `json:"cert_pem"`
	KeyPEM      string `json:"key_pem"`
	ModifyIndex uint64 `json:"modify_index"`
}

const (
	tableClusterCA = "cluster_ca"
	clusterCAID    = "ca"
)

func clusterCATable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableClusterCA,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
		},
	}
}

// clusterCACmd is the body of put_cluster_ca.
type clusterCACmd struct {
	CA *ClusterCA `json:"ca"`
}

func applyPutClusterCA(txn *memdb.Txn, index uint64, body []byte) error {
	var c clusterCACmd
	if err := decodeBody(cmdPutClusterCA, body, &c); err != nil {
		return err
	}
	if c.CA == nil || c.CA.CertPEM == "" || c.CA.KeyPEM == "" {
		return errdefs.New(errdefs.InvalidArgument, "put cluster CA: a certificate and a key are required")
	}
	raw, err := txn.First(tableClusterCA, indexID, clusterCAID)
	if err != nil {
		return fmt.Errorf("apply put cluster CA: %w", err)
	}
	if raw != nil {
		if cur := raw.(*ClusterCA); cur.CertPEM != c.CA.CertPEM || cur.KeyPEM != c.CA.KeyPEM {
			return errdefs.New(errdefs.FailedPrecondition, "the cluster already has another CA: this server's CA directory is of another cluster")
		}
		return nil // the same CA again: nothing to do
	}
	ca := *c.CA
	ca.ID, ca.ModifyIndex = clusterCAID, index
	if err := txn.Insert(tableClusterCA, &ca); err != nil {
		return fmt.Errorf("apply put cluster CA: %w", err)
	}
	return nil
}

// PutClusterCA records the cluster CA when the state has none. The same CA
// again is a no-op; another CA is FailedPrecondition.
func (s *Store) PutClusterCA(ctx context.Context, certPEM, keyPEM []byte) error {
	_, err := s.apply(ctx, cmdPutClusterCA, clusterCACmd{CA: &ClusterCA{ID: clusterCAID, CertPEM: string(certPEM), KeyPEM: string(keyPEM)}})
	return err
}

// ClusterCA returns the cluster CA; NotFound when no server recorded one
// yet.
func (sn *Snapshot) ClusterCA() (*ClusterCA, error) {
	raw, err := sn.db.Txn(false).First(tableClusterCA, indexID, clusterCAID)
	if err != nil {
		return nil, fmt.Errorf("get cluster CA: %w", err)
	}
	if raw == nil {
		return nil, errdefs.New(errdefs.NotFound, "no cluster CA in the state")
	}
	c := *raw.(*ClusterCA)
	return &c, nil
}
