package pki

import (
	"crypto/x509"
	"testing"
)

// An Authority's configurations follow what it trusts at each handshake:
// a peer of a new CA is refused, accepted once the new CA is trusted
// beside the old, and peers of the old are refused once it is dropped.
func TestAuthorityFollowsRotation(t *testing.T) {
	oldCA, _ := NewCA("old")
	newCA, _ := NewCA("new")
	leaf := func(ca *CA, id string) *Holder {
		l, err := ca.IssueServer(id, []string{"127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		c, err := l.TLS()
		if err != nil {
			t.Fatal(err)
		}
		return NewHolder(c)
	}
	srvAuth, cliAuth := NewAuthority(oldCA), NewAuthority(oldCA)
	srvCert, cliOld, cliNew := leaf(oldCA, "s1"), leaf(oldCA, "s2"), leaf(newCA, "s3")
	srvTLS := srvAuth.ServerConfig(srvCert, RoleServer)
	ok := func(what string, cli *Holder, want bool) {
		t.Helper()
		_, serr, cerr := handshake(t, srvTLS, cliAuth.ClientConfig(cli))
		if got := serr == nil && cerr == nil; got != want {
			t.Fatalf("%s: accepted %v, want %v (server %v, client %v)", what, got, want, serr, cerr)
		}
	}
	ok("old CA", cliOld, true)
	ok("new CA before it is trusted", cliNew, false)
	srvAuth.Set(oldCA, newCA.Cert)
	ok("new CA trusted beside the old", cliNew, true)
	ok("old CA trusted beside the new", cliOld, true)
	// The server's certificate moves to the new CA: a client that trusts
	// only the old refuses it until it trusts both.
	srvAuth.Set(newCA, oldCA.Cert)
	srvCert.Set(*leaf(newCA, "s1").Get())
	ok("a client of the old CA only, against a server of the new", cliOld, false)
	cliAuth.Set(oldCA, newCA.Cert)
	ok("a client that trusts both", cliOld, true)
	srvAuth.Set(newCA)
	ok("the old CA after it was dropped", cliOld, false)
	ok("the new CA after the old was dropped", cliNew, true)
	if srvAuth.Signer() != newCA || len(srvAuth.Trusted()) != 1 {
		t.Fatalf("after the rotation: signer %s, %d trusted", srvAuth.Signer().Hash(), len(srvAuth.Trusted()))
	}
}

// A bundle's hash does not depend on the order or on repeats; a bundle
// reads back as written; IssuerHash names the CA that signed.
func TestBundle(t *testing.T) {
	a, _ := NewCA("a")
	b, _ := NewCA("b")
	if BundleHash([]*x509.Certificate{a.Cert, b.Cert}) != BundleHash([]*x509.Certificate{b.Cert, a.Cert, b.Cert}) {
		t.Fatal("the bundle hash depends on order or repeats")
	}
	if BundleHash([]*x509.Certificate{a.Cert}) == BundleHash([]*x509.Certificate{a.Cert, b.Cert}) {
		t.Fatal("two sets share a hash")
	}
	auth := NewAuthority(a, b.Cert, a.Cert)
	certs, err := ParseBundle(auth.BundlePEM())
	if err != nil || len(certs) != 2 || !certs[0].Equal(a.Cert) || !certs[1].Equal(b.Cert) {
		t.Fatalf("bundle read back: %d certificates, %v", len(certs), err)
	}
	if auth.TrustHash() != BundleHash(certs) {
		t.Fatal("TrustHash is not the bundle's hash")
	}
	l, _ := b.IssueServer("s1", nil)
	if got := IssuerHash(l.Cert, certs); got != b.Hash() {
		t.Fatalf("IssuerHash = %s, want b's %s", got, b.Hash())
	}
	if got := IssuerHash(l.Cert, certs[:1]); got != "" {
		t.Fatalf("IssuerHash without the issuer = %q", got)
	}
	for _, bad := range []string{"", "junk", string(l.CertPEM)} {
		if _, err := ParseBundle([]byte(bad)); err == nil {
			t.Fatalf("ParseBundle(%.20q) accepted", bad)
		}
	}
}
