package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/pki"
)

func testIdentity(t *testing.T, ca *pki.CA, id string) *identity {
	t.Helper()
	csr, key, err := pki.NewCSR(id)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.SignNode(csr, id)
	if err != nil {
		t.Fatal(err)
	}
	ident, err := newIdentity(id, cert, key, ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	return ident
}

func TestIdentitySaveLoad(t *testing.T) {
	ca, _ := pki.NewCA("test")
	dir := filepath.Join(t.TempDir(), "agent")
	if got, err := loadIdentity(dir); got != nil || err != nil {
		t.Fatalf("empty dir: %v, %v; want no identity", got, err)
	}
	want := testIdentity(t, ca, "n-1")
	if err := want.save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := loadIdentity(dir)
	if err != nil || got.NodeID != "n-1" || !got.Leaf.Cert.Equal(want.Leaf.Cert) || string(got.Leaf.KeyPEM) != string(want.Leaf.KeyPEM) {
		t.Fatalf("loaded %+v, %v", got, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		fi, _ := e.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
}

func TestIdentityRefusesMismatches(t *testing.T) {
	ca, _ := pki.NewCA("test")
	other, _ := pki.NewCA("other")
	n1 := testIdentity(t, ca, "n-1")
	foreign := testIdentity(t, other, "n-1")
	for _, tt := range []struct {
		name             string
		id               string
		cert, key, caPEM []byte
		kind             errdefs.Kind
		msg              string
	}{
		{"other node", "n-2", n1.Leaf.CertPEM, n1.Leaf.KeyPEM, ca.CertPEM, errdefs.PermissionDenied, "names node.n-1, not node n-2"},
		{"other CA", "n-1", foreign.Leaf.CertPEM, foreign.Leaf.KeyPEM, ca.CertPEM, errdefs.PermissionDenied, "not signed by the cluster CA"},
		{"other key", "n-1", n1.Leaf.CertPEM, foreign.Leaf.KeyPEM, ca.CertPEM, errdefs.InvalidArgument, "certificate and key do not match"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newIdentity(tt.id, tt.cert, tt.key, tt.caPEM)
			if errdefs.KindOf(err) != tt.kind || err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("%v, want %v %q", err, tt.kind, tt.msg)
			}
		})
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, idFile), []byte("{"), 0o600)
	if _, err := loadIdentity(dir); errdefs.KindOf(err) != errdefs.InvalidArgument || !strings.Contains(err.Error(), "is corrupt") {
		t.Fatalf("corrupt node.json: %v", err)
	}
}
