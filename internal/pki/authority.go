package pki

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/denhq/den/internal/errdefs"
)

// Authority is the CA a process signs with and the set of CAs it trusts,
// replaced together while connections use them: during a rotation of the
// cluster CA a server trusts the old and the new CA at once, then signs
// with the new, then drops the old. TLS configurations built on it read
// it at each handshake.
type Authority struct {
	cur atomic.Pointer[authState]
}

type authState struct {
	signer     *CA
	signerHash string
	trusted    []*x509.Certificate // the signer first
	pool       *x509.CertPool
	hash       string
}

// NewAuthority signs with signer and trusts it and also.
func NewAuthority(signer *CA, also ...*x509.Certificate) *Authority {
	a := &Authority{}
	a.Set(signer, also...)
	return a
}

// Set replaces the signer and the trusted set (the signer and also; a
// repeated certificate counts once).
func (a *Authority) Set(signer *CA, also ...*x509.Certificate) {
	st := &authState{signer: signer, signerHash: signer.Hash(), pool: x509.NewCertPool()}
	for _, c := range append([]*x509.Certificate{signer.Cert}, also...) {
		if c == nil || slices.ContainsFunc(st.trusted, func(t *x509.Certificate) bool { return t.Equal(c) }) {
			continue
		}
		st.trusted = append(st.trusted, c)
		st.pool.AddCert(c)
	}
	st.hash = BundleHash(st.trusted)
	a.cur.Store(st)
}

// Signer is the CA that signs certificates now.
func (a *Authority) Signer() *CA { return a.cur.Load().signer }

// SignerHash is Signer().Hash(), worked out once (a heartbeat answers it).
func (a *Authority) SignerHash() string { return a.cur.Load().signerHash }

// Trusted are the CA certificates trusted now, the signer's first.
func (a *Authority) Trusted() []*x509.Certificate { return a.cur.Load().trusted }

// Pool is the trusted CAs as a pool.
func (a *Authority) Pool() *x509.CertPool { return a.cur.Load().pool }

// TrustHash names the trusted set (BundleHash).
func (a *Authority) TrustHash() string { return a.cur.Load().hash }

// BundlePEM is the trusted set in PEM, the signer first: what an agent
// keeps as ca.pem. A reader of one certificate gets the signer.
func (a *Authority) BundlePEM() []byte { return BundlePEM(a.Trusted()) }

// BundleHash names a set of CA certificates: the SHA-256 of their sorted
// hashes, "sha256:<hex>". The order of the set does not count.
func BundleHash(certs []*x509.Certificate) string {
	hs := make([]string, 0, len(certs))
	for _, c := range certs {
		hs = append(hs, CertHash(c))
	}
	slices.Sort(hs)
	hs = slices.Compact(hs)
	sum := sha256.Sum256([]byte(strings.Join(hs, "\n")))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// BundlePEM encodes certs one after another.
func BundlePEM(certs []*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pemBlock("CERTIFICATE", c.Raw)...)
	}
	return b
}

// ParseBundle reads every certificate of a PEM bundle; each must be a CA.
// It fails on a bundle with none.
func ParseBundle(bundle []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := bundle
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "parse a certificate of the CA bundle")
		}
		if !c.IsCA {
			return nil, errdefs.New(errdefs.InvalidArgument, "certificate %q of the CA bundle is not a CA", c.Subject.CommonName)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errdefs.New(errdefs.InvalidArgument, "the CA bundle holds no certificate")
	}
	return certs, nil
}

// IssuerHash is the hash (CertHash) of the CA among cas that signed cert;
// "" when none did.
func IssuerHash(cert *x509.Certificate, cas []*x509.Certificate) string {
	for _, ca := range cas {
		if cert.CheckSignatureFrom(ca) == nil {
			return CertHash(ca)
		}
	}
	return ""
}

// ServerConfig is a TLS 1.3 server configuration that presents what h
// holds and requires a client certificate of a CA a trusts now, with one
// of roles.
func (a *Authority) ServerConfig(h *Holder, roles ...string) *tls.Config {
	return WithClientCAs(&tls.Config{
		MinVersion:            tls.VersionTLS13,
		GetCertificate:        func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return h.Get(), nil },
		ClientAuth:            tls.RequireAndVerifyClientCert,
		VerifyPeerCertificate: requireRole(roles),
	}, a)
}

// WithClientCAs makes base verify client certificates against what a
// trusts at each handshake (the node listener's configuration, which also
// accepts joins without a certificate, is built this way).
func WithClientCAs(base *tls.Config, a *Authority) *tls.Config {
	cfg := base.Clone()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.ClientCAs = a.Pool()
		return c, nil
	}
	return cfg
}

// ClientConfig is a TLS 1.3 client configuration that presents what h
// holds and accepts only a server certificate of role server of a CA a
// trusts at the handshake.
func (a *Authority) ClientConfig(h *Holder) *tls.Config { return clientConfig(a.Pool, h) }
