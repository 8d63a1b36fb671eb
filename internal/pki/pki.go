// Package pki is the cluster's certificate authority: one ECDSA P-256 CA
// signs the servers' certificates (raft, write forwarding, the node port)
// and the agents' client certificates. Every connection between den
// processes is mutual TLS 1.3 against this CA; nothing else is trusted.
//
// A certificate's identity is its common name: "server.<id>" for a server,
// "node.<id>" for an agent. Peers check the role, not only the chain, so an
// agent's certificate cannot open a raft connection.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/fsutil"
)

// Roles, the prefix of a certificate's common name.
const (
	RoleServer = "server"
	RoleNode   = "node"
)

// Lifetimes. A CA lasts ten years; leaf certificates a month, renewed when
// a third of their life is left (see NeedsRenewal).
const (
	CALifetime   = 10 * 365 * 24 * time.Hour
	LeafLifetime = 30 * 24 * time.Hour
)

// CA is a certificate authority with its private key.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// CertPEM and KeyPEM are the same, encoded; they are what is stored.
	CertPEM, KeyPEM []byte
}

// NewCA makes a fresh CA named name.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"den"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return ParseCA(pemBlock("CERTIFICATE", der), pemBlock("EC PRIVATE KEY", keyDER))
}

// ParseCA reads a CA from its PEM certificate and key.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, errdefs.New(errdefs.InvalidArgument, "certificate %q is not a CA", cert.Subject.CommonName)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errdefs.New(errdefs.InvalidArgument, "the CA key does not match the CA certificate")
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// ParseCACert is a CA of which only the certificate is known: it verifies
// peers, and signs nothing until the key is known.
func ParseCACert(certPEM []byte) (*CA, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, errdefs.New(errdefs.InvalidArgument, "certificate %q is not a CA", cert.Subject.CommonName)
	}
	return &CA{Cert: cert, CertPEM: certPEM}, nil
}

// File names in a CA directory. CATrustedFile holds the CAs trusted
// beside ca.pem while the cluster CA is rotated; it is absent otherwise.
const (
	CACertFile    = "ca.pem"
	CAKeyFile     = "ca-key.pem"
	CATrustedFile = "ca-trusted.pem"
)

// LoadCA reads dir/ca.pem and dir/ca-key.pem.
func LoadCA(dir string) (*CA, error) {
	c, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("read the cluster CA: %w", err)
	}
	k, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("read the cluster CA key: %w", err)
	}
	return ParseCA(c, k)
}

// LoadTrusted reads dir/ca-trusted.pem: nil when there is none.
func LoadTrusted(dir string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(filepath.Join(dir, CATrustedFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the CAs trusted during a rotation: %w", err)
	}
	return ParseBundle(b)
}

// SaveTrusted writes certs to dir/ca-trusted.pem, or removes it when
// there are none.
func SaveTrusted(dir string, certs []*x509.Certificate) error {
	p := filepath.Join(dir, CATrustedFile)
	if len(certs) == 0 {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	return fsutil.WriteFileAtomic(p, BundlePEM(certs), 0o644)
}

// Save writes the CA to dir (the key mode 0600), each file to a temporary
// name first.
func (ca *CA) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, CAKeyFile), ca.KeyPEM, 0o600); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, CACertFile), ca.CertPEM, 0o644)
}

// Hash is the CA certificate's SHA-256, "sha256:<hex>": what a join token
// carries so an agent can check the server before it has a certificate.
func (ca *CA) Hash() string { return CertHash(ca.Cert) }

// CertHash is cert's SHA-256 as in CA.Hash.
func CertHash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Pool is a cert pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Leaf is a signed certificate and its key, usable as a tls.Certificate.
type Leaf struct {
	CertPEM, KeyPEM []byte
	Cert            *x509.Certificate
}

// TLS is the leaf as a tls.Certificate.
func (l *Leaf) TLS() (tls.Certificate, error) { return tls.X509KeyPair(l.CertPEM, l.KeyPEM) }

// IssueServer signs a server certificate for id, valid as a TLS server for
// hosts (names and IP addresses) and as a client (servers dial each other).
func (ca *CA) IssueServer(id string, hosts []string) (*Leaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := ca.sign(&key.PublicKey, RoleServer+"."+id, hosts, LeafLifetime)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return parseLeaf(pemBlock("CERTIFICATE", der), pemBlock("EC PRIVATE KEY", keyDER))
}

// NewCSR makes a key and a certificate request for node id: what an agent
// sends with its join token. It returns the request and the key's PEM.
func NewCSR(id string) (csrPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: RoleNode + "." + id},
	}, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE REQUEST", der), pemBlock("EC PRIVATE KEY", keyDER), nil
}

// CSRKeyHash is the hex SHA-256 of the public key of a certificate
// request, after checking the request's signature: a name for the key
// that only its holder can claim.
func CSRKeyHash(csrPEM []byte) (string, error) {
	csr, err := parseCSR(csrPEM)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKIXPublicKey(csr.PublicKey)
	if err != nil {
		return "", errdefs.Wrap(errdefs.InvalidArgument, err, "the certificate request's key")
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

func parseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	b, _ := pem.Decode(csrPEM)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, errdefs.New(errdefs.InvalidArgument, "the certificate request is not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "parse the certificate request")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "the certificate request's signature")
	}
	return csr, nil
}

// SignNode signs an agent's request as node id's client certificate. The
// request's own name is ignored: the server decides who the node is.
func (ca *CA) SignNode(csrPEM []byte, id string) ([]byte, error) {
	return ca.signRequest(csrPEM, RoleNode, id, nil)
}

// SignServer signs a joining server's request as server id's certificate
// for hosts (names and IP addresses; servers check the role, not the
// name). The request's own name is ignored.
func (ca *CA) SignServer(csrPEM []byte, id string, hosts []string) ([]byte, error) {
	return ca.signRequest(csrPEM, RoleServer, id, hosts)
}

func (ca *CA) signRequest(csrPEM []byte, role, id string, hosts []string) ([]byte, error) {
	if err := ValidID(id); err != nil {
		return nil, err
	}
	csr, err := parseCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, errdefs.New(errdefs.InvalidArgument, "the certificate request's key must be ECDSA P-256")
	}
	der, err := ca.sign(pub, role+"."+id, hosts, LeafLifetime)
	if err != nil {
		return nil, err
	}
	return pemBlock("CERTIFICATE", der), nil
}

func (ca *CA) sign(pub *ecdsa.PublicKey, cn string, hosts []string, life time.Duration) ([]byte, error) {
	if ca.Key == nil {
		return nil, errdefs.New(errdefs.FailedPrecondition, "this server does not hold the cluster CA's key yet")
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"den"}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(life),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if strings.HasPrefix(cn, RoleServer+".") {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else if h != "" {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	}
	return x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
}

// NeedsRenewal reports whether cert has less than a third of its life left.
func NeedsRenewal(cert *x509.Certificate, now time.Time) bool {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotAfter.Sub(now) < life/3
}

// Identity is who a verified peer certificate names.
type Identity struct {
	Role, ID string
}

// IdentityOf reads the role and ID from cert's common name.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	role, id, ok := strings.Cut(cert.Subject.CommonName, ".")
	if !ok || (role != RoleServer && role != RoleNode) || ValidID(id) != nil {
		return Identity{}, errdefs.New(errdefs.PermissionDenied, "certificate %q names no den server or node", cert.Subject.CommonName)
	}
	return Identity{Role: role, ID: id}, nil
}

// ValidID checks a server or node ID: 1-63 characters of [a-z0-9-_.].
func ValidID(id string) error {
	if id == "" || len(id) > 63 {
		return errdefs.New(errdefs.InvalidArgument, "ID %q must be 1-63 characters", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return errdefs.New(errdefs.InvalidArgument, "ID %q may hold only a-z, 0-9, '-', '_' and '.'", id)
		}
	}
	return nil
}

// Holder holds a certificate that is replaced while it is in use (a
// server's, renewed before it expires): TLS configurations built on it
// present whatever it holds at each handshake.
type Holder struct {
	cert atomic.Pointer[tls.Certificate]
}

// NewHolder holds cert.
func NewHolder(cert tls.Certificate) *Holder {
	h := &Holder{}
	h.Set(cert)
	return h
}

// Set replaces the certificate; handshakes from now on present it.
func (h *Holder) Set(cert tls.Certificate) { h.cert.Store(&cert) }

// Get is the certificate held now.
func (h *Holder) Get() *tls.Certificate { return h.cert.Load() }

// Leaf is the held certificate, parsed.
func (h *Holder) Leaf() (*x509.Certificate, error) {
	c := h.Get()
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	return x509.ParseCertificate(c.Certificate[0])
}

// ServerConfig is a TLS 1.3 server configuration that presents cert and
// requires a client certificate of the CA with one of roles.
func (ca *CA) ServerConfig(cert tls.Certificate, roles ...string) *tls.Config {
	return ca.ServerConfigOf(NewHolder(cert), roles...)
}

// ServerConfigOf is ServerConfig presenting what h holds at each
// handshake.
func (ca *CA) ServerConfigOf(h *Holder, roles ...string) *tls.Config {
	return NewAuthority(ca).ServerConfig(h, roles...)
}

// ClientConfig is a TLS 1.3 client configuration that presents cert and
// accepts only a server certificate of the CA with role server. The
// server's name is not checked against an address (servers move; the role
// and the CA are what count).
func ClientConfig(caPool *x509.CertPool, cert tls.Certificate) *tls.Config {
	return clientConfig(func() *x509.CertPool { return caPool }, NewHolder(cert))
}

func clientConfig(pool func() *x509.CertPool, h *Holder) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return h.Get(), nil },
		// Chain and role are checked in VerifyConnection instead of
		// against a host name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyChain(cs.PeerCertificates, pool(), RoleServer)
		},
	}
}

// PeerIdentity is the identity of a TLS connection's verified peer.
func PeerIdentity(cs tls.ConnectionState) (Identity, error) {
	if len(cs.PeerCertificates) == 0 {
		return Identity{}, errdefs.New(errdefs.Unauthenticated, "no client certificate")
	}
	return IdentityOf(cs.PeerCertificates[0])
}

func requireRole(roles []string) func([][]byte, [][]*x509.Certificate) error {
	return func(_ [][]byte, chains [][]*x509.Certificate) error {
		if len(chains) == 0 || len(chains[0]) == 0 {
			return errors.New("no verified client certificate")
		}
		id, err := IdentityOf(chains[0][0])
		if err != nil {
			return err
		}
		for _, r := range roles {
			if id.Role == r {
				return nil
			}
		}
		return fmt.Errorf("a %s certificate may not connect here", id.Role)
	}
}

func verifyChain(certs []*x509.Certificate, pool *x509.CertPool, role string) error {
	if len(certs) == 0 {
		return errors.New("the peer sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return err
	}
	id, err := IdentityOf(certs[0])
	if err != nil {
		return err
	}
	if id.Role != role {
		return fmt.Errorf("peer is a %s, want a %s", id.Role, role)
	}
	return nil
}

// ParseCert reads one PEM certificate.
func ParseCert(certPEM []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errdefs.New(errdefs.InvalidArgument, "not a PEM CERTIFICATE")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "parse certificate")
	}
	return c, nil
}

// ParseKey reads one PEM EC private key.
func ParseKey(keyPEM []byte) (*ecdsa.PrivateKey, error) {
	b, _ := pem.Decode(keyPEM)
	if b == nil || b.Type != "EC PRIVATE KEY" {
		return nil, errdefs.New(errdefs.InvalidArgument, "not a PEM EC PRIVATE KEY")
	}
	k, err := x509.ParseECPrivateKey(b.Bytes)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "parse key")
	}
	return k, nil
}

func parseLeaf(certPEM, keyPEM []byte) (*Leaf, error) {
	c, err := ParseCert(certPEM)
	if err != nil {
		return nil, err
	}
	return &Leaf{CertPEM: certPEM, KeyPEM: keyPEM, Cert: c}, nil
}

// NewLeaf pairs a signed certificate with its key (an agent's, after its
// request was signed).
func NewLeaf(certPEM, keyPEM []byte) (*Leaf, error) {
	l, err := parseLeaf(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if _, err := l.TLS(); err != nil {
		return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "certificate and key do not match")
	}
	return l, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}
