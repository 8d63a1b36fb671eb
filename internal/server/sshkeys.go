package server

import (
	"context"
	"net/http"
	"regexp"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

// SSH keys: a tenant registers public keys; the SSH gateway
// (internal/sshgw, through ssh_backend.go) lets their holders log in to
// the tenant's sandboxes.

// sshKeyNameRE is what an SSH key's name may be: key comments such as
// "alice@laptop" qualify.
var sshKeyNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,62}$`)

// maxSSHKeyText bounds the authorized_keys line of a key (an RSA 16384
// key is about 2.8 KB).
const maxSSHKeyText = 16 << 10

// AddSSHKey parses req's key and records it for p's tenant.
// InvalidArgument for text that is not one public key; AlreadyExists for
// a name or a key the tenant already has.
func (s *Server) AddSSHKey(ctx context.Context, p Principal, req rest.AddSSHKeyRequest) (*store.SSHKey, error) {
	pub, comment, err := ParseSSHPublicKey(req.PublicKey)
	if err != nil {
		return nil, err
	}
	id := "sshkey-" + newSandboxID()[:16]
	name := req.Name
	switch {
	case name != "" && !sshKeyNameRE.MatchString(name):
		return nil, errdefs.New(errdefs.InvalidArgument, "name %q is invalid: use 1-63 letters, digits, '.', '_', '@' and '-', starting with a letter or digit", name)
	case name == "" && sshKeyNameRE.MatchString(comment):
		name = comment
	case name == "":
		name = "key-" + id[len("sshkey-"):len("sshkey-")+8]
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	if comment != "" {
		line += " " + comment
	}
	rec := &store.SSHKey{ID: id, Tenant: p.Tenant, Name: name, PublicKey: line,
		Fingerprint: ssh.FingerprintSHA256(pub), CreatedAt: s.cfg.Now().UTC()}
	if err := s.cfg.Store.PutSSHKey(ctx, rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// ParseSSHPublicKey parses one authorized_keys line (options are
// refused: den has none to apply) and returns the key and its comment.
func ParseSSHPublicKey(text string) (ssh.PublicKey, string, error) {
	text = strings.TrimSpace(text)
	switch {
	case text == "":
		return nil, "", errdefs.New(errdefs.InvalidArgument, "public_key is empty: send one line of an authorized_keys file, e.g. ~/.ssh/id_ed25519.pub")
	case len(text) > maxSSHKeyText:
		return nil, "", errdefs.New(errdefs.InvalidArgument, "public_key is longer than %d bytes", maxSSHKeyText)
	case strings.Contains(text, "PRIVATE KEY"):
		return nil, "", errdefs.New(errdefs.InvalidArgument, "public_key is a private key: send the public one (the .pub file)")
	case strings.ContainsAny(text, "\r\n"):
		return nil, "", errdefs.New(errdefs.InvalidArgument, "public_key has several lines: send one key")
	}
	pub, comment, opts, rest, err := ssh.ParseAuthorizedKey([]byte(text))
	if err != nil {
		// x/crypto's message names its line scanner's internals; ours says
		// what a key looks like.
		return nil, "", errdefs.New(errdefs.InvalidArgument, "public_key is not an SSH public key: want TYPE BASE64 [COMMENT], e.g. ssh-ed25519 AAAAC3... you@host")
	}
	if len(opts) > 0 || len(rest) > 0 {
		return nil, "", errdefs.New(errdefs.InvalidArgument, "public_key has authorized_keys options: send the key alone")
	}
	if _, ok := pub.(*ssh.Certificate); ok {
		return nil, "", errdefs.New(errdefs.InvalidArgument, "public_key is a certificate: send a plain public key")
	}
	return pub, comment, nil
}

// LookupSSHKey finds an SSH key of p's tenant by ID or name; NotFound for
// one of another tenant, exactly as for one that does not exist.
func (s *Server) LookupSSHKey(p Principal, idOrName string) (*store.SSHKey, error) {
	snap := s.cfg.Store.Snapshot()
	if rec, err := snap.SSHKey(idOrName); err == nil && rec.Tenant == p.Tenant {
		return rec, nil
	}
	if rec, err := snap.SSHKeyByName(p.Tenant, idOrName); err == nil {
		return rec, nil
	}
	return nil, errdefs.New(errdefs.NotFound, "ssh key %s not found", idOrName)
}

// DeleteSSHKey removes an SSH key of p's tenant. Sessions already open
// with it go on.
func (s *Server) DeleteSSHKey(ctx context.Context, p Principal, idOrName string) error {
	rec, err := s.LookupSSHKey(p, idOrName)
	if err != nil {
		return err
	}
	return s.cfg.Store.DeleteSSHKey(ctx, rec.ID)
}

func (s *Server) addSSHKey(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req rest.AddSSHKeyRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	rec, err := s.AddSSHKey(r.Context(), p, req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, sshKeyREST(rec))
}

func (s *Server) listSSHKeys(w http.ResponseWriter, _ *http.Request, p Principal) error {
	list, err := s.cfg.Store.Snapshot().SSHKeys(p.Tenant)
	if err != nil {
		return err
	}
	out := rest.SSHKeyList{SSHKeys: make([]rest.SSHKey, 0, len(list))}
	for _, rec := range list {
		out.SSHKeys = append(out.SSHKeys, sshKeyREST(rec))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteSSHKey(w http.ResponseWriter, r *http.Request, p Principal) error {
	if err := s.DeleteSSHKey(r.Context(), p, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// sshKeyREST is the API view of an SSH key record.
func sshKeyREST(rec *store.SSHKey) rest.SSHKey {
	return rest.SSHKey{ID: rec.ID, Name: rec.Name, PublicKey: rec.PublicKey, Fingerprint: rec.Fingerprint, CreatedAt: rec.CreatedAt}
}
