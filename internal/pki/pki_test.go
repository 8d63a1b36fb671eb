package pki

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/internal/errdefs"
)

func mustCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// handshake runs a TLS handshake between srv and cli over a pipe and
// returns the server's view of the client and both errors.
func handshake(t *testing.T, srv, cli *tls.Config) (Identity, error, error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	type res struct {
		id  Identity
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s := tls.Server(a, srv)
		err := s.Handshake()
		var id Identity
		if err == nil {
			id, err = PeerIdentity(s.ConnectionState())
			io.WriteString(s, "ok")
		} else {
			a.Close()
		}
		ch <- res{id, err}
	}()
	c := tls.Client(b, cli)
	cerr := c.Handshake()
	if cerr == nil {
		buf := make([]byte, 2)
		_, cerr = io.ReadFull(c, buf)
	} else {
		b.Close()
	}
	r := <-ch
	return r.id, r.err, cerr
}

func TestServerAndNodeHandshake(t *testing.T) {
	ca := mustCA(t)
	srvLeaf, err := ca.IssueServer("s1", []string{"127.0.0.1", "den.test"})
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := srvLeaf.TLS()
	if err != nil {
		t.Fatal(err)
	}
	csr, key, err := NewCSR("ignored")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.SignNode(csr, "node-7")
	if err != nil {
		t.Fatal(err)
	}
	nodeLeaf, err := NewLeaf(certPEM, key)
	if err != nil {
		t.Fatal(err)
	}
	nodeCert, _ := nodeLeaf.TLS()

	id, serr, cerr := handshake(t, ca.ServerConfig(srvCert, RoleNode), ClientConfig(ca.Pool(), nodeCert))
	if serr != nil || cerr != nil {
		t.Fatalf("node to server: server %v, client %v", serr, cerr)
	}
	if id != (Identity{Role: RoleNode, ID: "node-7"}) {
		t.Fatalf("server saw %+v, want node node-7 (the server names the node, not its request)", id)
	}

	// A node certificate may not open a server-only port.
	if _, serr, _ := handshake(t, ca.ServerConfig(srvCert, RoleServer), ClientConfig(ca.Pool(), nodeCert)); serr == nil || !strings.Contains(serr.Error(), "node certificate may not connect") {
		t.Fatalf("node on a server port: %v, want refused", serr)
	}
	// Servers reach each other.
	if id, serr, cerr := handshake(t, ca.ServerConfig(srvCert, RoleServer), ClientConfig(ca.Pool(), srvCert)); serr != nil || cerr != nil || id.Role != RoleServer || id.ID != "s1" {
		t.Fatalf("server to server: %+v %v %v", id, serr, cerr)
	}
}

func TestForeignCARefused(t *testing.T) {
	ca, other := mustCA(t), mustCA(t)
	srvLeaf, _ := ca.IssueServer("s1", nil)
	srvCert, _ := srvLeaf.TLS()
	foreignLeaf, _ := other.IssueServer("evil", nil)
	foreignCert, _ := foreignLeaf.TLS()

	// A client of another CA is refused by the server.
	if _, serr, _ := handshake(t, ca.ServerConfig(srvCert, RoleServer, RoleNode), ClientConfig(other.Pool(), foreignCert)); serr == nil {
		t.Fatal("server accepted a client certificate of another CA")
	}
	// A server of another CA is refused by the client.
	if _, _, cerr := handshake(t, other.ServerConfig(foreignCert, RoleServer), ClientConfig(ca.Pool(), srvCert)); cerr == nil {
		t.Fatal("client accepted a server certificate of another CA")
	}
	// A node certificate presented as a server is refused by clients.
	csr, key, _ := NewCSR("n")
	certPEM, _ := ca.SignNode(csr, "n")
	nodeLeaf, _ := NewLeaf(certPEM, key)
	nodeCert, _ := nodeLeaf.TLS()
	if _, _, cerr := handshake(t, ca.ServerConfig(nodeCert, RoleServer, RoleNode), ClientConfig(ca.Pool(), srvCert)); cerr == nil {
		t.Fatal("client accepted a node certificate as a server")
	}
}

func TestSaveLoadAndBadInput(t *testing.T) {
	ca := mustCA(t)
	dir := t.TempDir()
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	back, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if back.Hash() != ca.Hash() || !strings.HasPrefix(ca.Hash(), "sha256:") || len(ca.Hash()) != 71 {
		t.Fatalf("hash %q after load %q", ca.Hash(), back.Hash())
	}
	other := mustCA(t)
	if _, err := ParseCA(ca.CertPEM, other.KeyPEM); err == nil {
		t.Fatal("ParseCA accepted a key of another CA")
	}
	if _, err := ca.SignNode([]byte("junk"), "n"); err == nil {
		t.Fatal("SignNode accepted junk")
	}
	csr, _, _ := NewCSR("n")
	if _, err := ca.SignNode(csr, "Bad ID!"); err == nil {
		t.Fatal("SignNode accepted a bad ID")
	}
	leaf, _ := ca.IssueServer("s", nil)
	if NeedsRenewal(leaf.Cert, time.Now()) {
		t.Fatal("a new certificate needs renewal")
	}
	if !NeedsRenewal(leaf.Cert, time.Now().Add(LeafLifetime*3/4)) {
		t.Fatal("a certificate with a quarter of its life left does not need renewal")
	}
}

func TestCSRKeyHash(t *testing.T) {
	csr1, _, err := NewCSR("a")
	if err != nil {
		t.Fatal(err)
	}
	csr2, _, _ := NewCSR("a")
	h1, err1 := CSRKeyHash(csr1)
	h1again, _ := CSRKeyHash(csr1)
	h2, err2 := CSRKeyHash(csr2)
	if err1 != nil || err2 != nil || len(h1) != 64 || h1 != h1again || h1 == h2 {
		t.Fatalf("hashes %q %q %q, errors %v %v", h1, h1again, h2, err1, err2)
	}
	if _, err := CSRKeyHash([]byte("junk")); errdefs.KindOf(err) != errdefs.InvalidArgument ||
		err.Error() != "the certificate request is not a PEM CERTIFICATE REQUEST" {
		t.Fatalf("junk: %v", err)
	}
}

// A joining server's request becomes a server certificate that a
// server's client configuration accepts; a CA known only by its
// certificate signs nothing.
func TestSignServer(t *testing.T) {
	ca, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	csr, keyPEM, err := NewCSR("s2")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.SignServer(csr, "s2", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ParseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := IdentityOf(cert); err != nil || id.Role != RoleServer || id.ID != "s2" {
		t.Fatalf("identity %+v, %v", id, err)
	}
	if err := verifyChain([]*x509.Certificate{cert}, ca.Pool(), RoleServer); err != nil {
		t.Fatalf("a server's client refuses the joined server: %v", err)
	}
	if _, err := NewLeaf(certPEM, keyPEM); err != nil {
		t.Fatalf("certificate and key: %v", err)
	}
	certOnly, err := ParseCACert(ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if certOnly.Hash() != ca.Hash() {
		t.Fatal("the certificate-only CA has another hash")
	}
	if _, err := certOnly.SignServer(csr, "s3", nil); !errdefs.Is(err, errdefs.FailedPrecondition) {
		t.Fatalf("a CA without its key signed: %v", err)
	}
	if _, err := certOnly.IssueServer("s3", nil); !errdefs.Is(err, errdefs.FailedPrecondition) {
		t.Fatalf("a CA without its key issued: %v", err)
	}
}
