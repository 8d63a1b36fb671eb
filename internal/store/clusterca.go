package store

import (
	"context"
	"fmt"
	"maps"
	"time"

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
	CertPEM string `json:"cert_pem"`
	KeyPEM  string `json:"key_pem"`

	// A rotation replaces the CA in three steps, each of which every
	// server and every connected node takes before the next (see
	// docs/architecture.md, "Rotating the cluster CA"):
	//   - CATrust: NextCertPEM is trusted beside CertPEM, which still signs.
	//   - CASign: the next CA became CertPEM and signs; the old one is
	//     PrevCertPEM, trusted until every certificate was signed again.
	//   - CAStable (finished): only CertPEM is trusted.
	Phase       string `json:"phase,omitempty"`
	NextCertPEM string `json:"next_cert_pem,omitempty"`
	NextKeyPEM  string `json:"next_key_pem,omitempty"`
	PrevCertPEM string `json:"prev_cert_pem,omitempty"`
	// Generation counts the steps taken; Acks holds, per server ID, the
	// last generation that server applied: it trusts what the step trusts
	// and its own certificate is of the signing CA.
	Generation uint64            `json:"generation,omitempty"`
	Acks       map[string]uint64 `json:"acks,omitempty"`
	// RotationStarted is when the rotation under way began; RotatedAt
	// when the last one finished.
	RotationStarted time.Time `json:"rotation_started,omitzero"`
	RotatedAt       time.Time `json:"rotated_at,omitzero"`
	ModifyIndex     uint64    `json:"modify_index"`
}

// Phases of a rotation of the cluster CA (ClusterCA.Phase).
const (
	CAStable = ""
	CATrust  = "trust"
	CASign   = "sign"
)

// Steps of a rotation (RotateClusterCA).
const (
	CABegin   = "begin"  // stable -> trust, with the next CA
	CAAdvance = "sign"   // trust -> sign
	CAFinish  = "finish" // sign -> stable
	CAAbort   = "abort"  // trust -> stable, the next CA dropped
)

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
	c.Acks = maps.Clone(c.Acks)
	return &c, nil
}

// rotateCACmd is the body of rotate_cluster_ca: a step (CABegin and so on)
// taken only from Generation, or a server's acknowledgement (Ack) of
// Generation.
type rotateCACmd struct {
	Step       string    `json:"step,omitempty"`
	Ack        string    `json:"ack,omitempty"`
	Generation uint64    `json:"generation"`
	CertPEM    string    `json:"cert_pem,omitempty"`
	KeyPEM     string    `json:"key_pem,omitempty"`
	Now        time.Time `json:"now,omitzero"`
}

func applyRotateClusterCA(txn *memdb.Txn, index uint64, body []byte) error {
	var c rotateCACmd
	if err := decodeBody(cmdRotateClusterCA, body, &c); err != nil {
		return err
	}
	raw, err := txn.First(tableClusterCA, indexID, clusterCAID)
	if err != nil {
		return fmt.Errorf("apply rotate cluster CA: %w", err)
	}
	if raw == nil {
		return errdefs.New(errdefs.NotFound, "no cluster CA in the state")
	}
	ca := *raw.(*ClusterCA)
	if c.Ack != "" {
		if c.Generation != ca.Generation || ca.Acks[c.Ack] == c.Generation {
			return nil // stale, or said before: nothing to record
		}
		ca.Acks = maps.Clone(ca.Acks)
		if ca.Acks == nil {
			ca.Acks = map[string]uint64{}
		}
		ca.Acks[c.Ack] = c.Generation
		ca.ModifyIndex = index
		return txn.Insert(tableClusterCA, &ca)
	}
	if c.Generation != ca.Generation {
		return errdefs.New(errdefs.Conflict, "the CA rotation moved on (generation %d, not %d)", ca.Generation, c.Generation)
	}
	want := map[string]string{CABegin: CAStable, CAAdvance: CATrust, CAFinish: CASign, CAAbort: CATrust}
	from, ok := want[c.Step]
	if !ok {
		return errdefs.New(errdefs.InvalidArgument, "unknown CA rotation step %q", c.Step)
	}
	if ca.Phase != from {
		return errdefs.New(errdefs.FailedPrecondition, "a CA rotation cannot take step %q in phase %q", c.Step, phaseName(ca.Phase))
	}
	switch c.Step {
	case CABegin:
		if c.CertPEM == "" || c.KeyPEM == "" {
			return errdefs.New(errdefs.InvalidArgument, "a CA rotation begins with the next CA's certificate and key")
		}
		ca.Phase, ca.NextCertPEM, ca.NextKeyPEM, ca.RotationStarted = CATrust, c.CertPEM, c.KeyPEM, c.Now
	case CAAdvance:
		ca.Phase, ca.PrevCertPEM, ca.CertPEM, ca.KeyPEM = CASign, ca.CertPEM, ca.NextCertPEM, ca.NextKeyPEM
		ca.NextCertPEM, ca.NextKeyPEM = "", ""
	case CAFinish:
		ca.Phase, ca.PrevCertPEM, ca.RotatedAt, ca.RotationStarted = CAStable, "", c.Now, time.Time{}
	case CAAbort:
		ca.Phase, ca.NextCertPEM, ca.NextKeyPEM, ca.RotationStarted = CAStable, "", "", time.Time{}
	}
	ca.Generation++
	ca.Acks = nil
	ca.ModifyIndex = index
	return txn.Insert(tableClusterCA, &ca)
}

// PhaseName is the phase as people read it ("stable" for CAStable).
func (c *ClusterCA) PhaseName() string { return phaseName(c.Phase) }

func phaseName(p string) string {
	if p == CAStable {
		return "stable"
	}
	return p
}

// RotateClusterCA takes a step of a rotation of the cluster CA from
// generation gen: Conflict when another step was taken since,
// FailedPrecondition when the step does not follow the phase. CABegin
// needs the next CA's certificate and key.
func (s *Store) RotateClusterCA(ctx context.Context, step string, gen uint64, certPEM, keyPEM []byte) error {
	_, err := s.apply(ctx, cmdRotateClusterCA, rotateCACmd{Step: step, Generation: gen,
		CertPEM: string(certPEM), KeyPEM: string(keyPEM), Now: normalTime(time.Now())})
	return err
}

// AckClusterCA records that server applied generation gen of the cluster
// CA; an acknowledgement of an older generation is ignored.
func (s *Store) AckClusterCA(ctx context.Context, server string, gen uint64) error {
	_, err := s.apply(ctx, cmdRotateClusterCA, rotateCACmd{Ack: server, Generation: gen})
	return err
}
