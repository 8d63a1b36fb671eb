package agent

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/fsutil"
	"github.com/denhq/den/internal/pki"
)

// Files of an agent's identity in its data directory, all mode 0600.
// node.pem holds the certificate and its key together, so that a renewal
// replaces both with one rename.
const (
	certFile = "node.pem"
	caFile   = "ca.pem"
	idFile   = "node.json"
)

// identity is who the agent is in the cluster: its certificate and the
// CAs it trusts (more than one while the cluster CA is rotated; ca.pem
// holds them all, the signing CA first).
type identity struct {
	NodeID string
	Leaf   *pki.Leaf
	CAs    []*x509.Certificate
	CAPEM  []byte
	// trustHash and issuerHash are what a heartbeat says of the node's
	// CAs (nodeproto.Heartbeat), worked out once.
	trustHash, issuerHash string
}

type idRecord struct {
	NodeID string `json:"node_id"`
}

// loadIdentity reads the identity in dir; (nil, nil) when there is none
// (a first start).
func loadIdentity(dir string) (*identity, error) {
	idb, err := os.ReadFile(filepath.Join(dir, idFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the node identity: %w", err)
	}
	var rec idRecord
	if err := json.Unmarshal(idb, &rec); err != nil || pki.ValidID(rec.NodeID) != nil {
		return nil, errdefs.New(errdefs.InvalidArgument, "%s is corrupt: remove the data directory's node files to join again", filepath.Join(dir, idFile))
	}
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, name)) }
	pair, err1 := read(certFile)
	caPEM, err2 := read(caFile)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("read the node identity: %w", err)
	}
	certPEM, keyPEM := splitPair(pair)
	return newIdentity(rec.NodeID, certPEM, keyPEM, caPEM)
}

// newIdentity checks that the certificate is node id's, signed by the CA
// and matching the key.
func newIdentity(id string, certPEM, keyPEM, caPEM []byte) (*identity, error) {
	leaf, err := pki.NewLeaf(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	cas, err := pki.ParseBundle(caPEM)
	if err != nil {
		return nil, fmt.Errorf("the cluster CA: %w", err)
	}
	roots := x509.NewCertPool()
	for _, ca := range cas {
		roots.AddCert(ca)
	}
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: roots,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, errdefs.Wrap(errdefs.PermissionDenied, err, "the node certificate is not signed by the cluster CA")
	}
	who, err := pki.IdentityOf(leaf.Cert)
	if err != nil {
		return nil, err
	}
	if who.Role != pki.RoleNode || who.ID != id {
		return nil, errdefs.New(errdefs.PermissionDenied, "the certificate names %s.%s, not node %s", who.Role, who.ID, id)
	}
	return &identity{NodeID: id, Leaf: leaf, CAs: cas, CAPEM: caPEM,
		trustHash: pki.BundleHash(cas), issuerHash: pki.IssuerHash(leaf.Cert, cas)}, nil
}

// save writes the identity to dir: the key and certificate first, the
// ID file last, so that a crash leaves either no identity or a whole one.
func (id *identity) save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	idb, err := json.Marshal(idRecord{NodeID: id.NodeID})
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{caFile, id.CAPEM}, {certFile, id.pair()}, {idFile, idb}} {
		if err := fsutil.WriteFileAtomic(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			return fmt.Errorf("save the node identity: %w", err)
		}
	}
	return nil
}

// pair is the certificate and key as node.pem holds them.
func (id *identity) pair() []byte {
	return append(append([]byte{}, id.Leaf.CertPEM...), id.Leaf.KeyPEM...)
}

// splitPair separates node.pem's certificate and key blocks.
func splitPair(b []byte) (certPEM, keyPEM []byte) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return certPEM, keyPEM
		}
		switch blk.Type {
		case "CERTIFICATE":
			certPEM = pem.EncodeToMemory(blk)
		case "EC PRIVATE KEY":
			keyPEM = pem.EncodeToMemory(blk)
		}
	}
}

// tlsConfig is the mutual TLS of the node's sessions.
func (id *identity) tlsConfig() (*tls.Config, error) {
	cert, err := id.Leaf.TLS()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, ca := range id.CAs {
		pool.AddCert(ca)
	}
	return pki.ClientConfig(pool, cert), nil
}

func (id *identity) trust() string  { return id.trustHash }
func (id *identity) issuer() string { return id.issuerHash }
