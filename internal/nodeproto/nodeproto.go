// Package nodeproto is the contract between den agent and the servers'
// node listener (internal/cluster): the join token's format, the one
// exchange of a join, and the calls an agent makes on its node link
// (hello, heartbeat, renew).
//
// A join happens on a TLS connection without a client certificate: the
// agent sends one frame (a JoinRequest), the server answers one frame (a
// JoinResponse) and closes. Every later connection presents the node's
// certificate and carries a nodelink session.
package nodeproto

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/pki"
)

// Methods an agent calls on its node link.
const (
	// MethodHello is the first call of a session: Hello in, HelloReply out.
	MethodHello = "cluster.hello"
	// MethodHeartbeat is called every HelloReply.HeartbeatMs.
	MethodHeartbeat = "cluster.heartbeat"
	// MethodRenew signs a new certificate for the calling node.
	MethodRenew = "cluster.renew"
)

// Capacity is what a node offers to sandboxes.
type Capacity struct {
	CPUs     float64 `json:"cpus"`
	MemoryMB int64   `json:"memory_mb"`
	DiskMB   int64   `json:"disk_mb,omitempty"`
}

// JoinRequest is the one frame of a join.
type JoinRequest struct {
	// Token is the join token as den token create printed it.
	Token string `json:"token"`
	// CSR is a PEM certificate request (pki.NewCSR); its name is ignored.
	CSR      string            `json:"csr"`
	Name     string            `json:"name"`
	Pool     string            `json:"pool,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Capacity Capacity          `json:"capacity"`
	// Role is RoleServer for a server joining the raft cluster with a
	// server token (Name is then its server ID and Hosts its addresses;
	// Pool, Labels and Capacity stay empty); "" for an agent.
	Role  string   `json:"role,omitempty"`
	Hosts []string `json:"hosts,omitempty"`
}

// RoleServer is JoinRequest.Role of a joining server.
const RoleServer = "server"

// JoinResponse answers a JoinRequest: a certificate, or Error.
type JoinResponse struct {
	NodeID string `json:"node_id,omitempty"`
	// Cert is the node's PEM certificate; CA the cluster CA's.
	Cert  string `json:"cert,omitempty"`
	CA    string `json:"ca,omitempty"`
	Error *Error `json:"error,omitempty"`
}

// Error is a refusal on the wire.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// WireError turns err into an Error.
func WireError(err error) *Error {
	return &Error{Code: errdefs.KindOf(err).Code(), Message: err.Error()}
}

// Err turns e back into an error of its kind.
func (e *Error) Err() error {
	k, _ := errdefs.KindOfCode(e.Code) // an unknown code is Internal
	return errdefs.New(k, "%s", e.Message)
}

// Hello is an agent's first call on a session.
type Hello struct {
	Name     string            `json:"name"`
	Pool     string            `json:"pool,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Capacity Capacity          `json:"capacity"`
	Runtimes []string          `json:"runtimes,omitempty"`
	Version  string            `json:"version,omitempty"`
	// Sandboxes are the IDs of the sandboxes the node runs.
	Sandboxes []string `json:"sandboxes,omitempty"`
}

// HelloReply accepts a Hello.
type HelloReply struct {
	NodeID string `json:"node_id"`
	// Server is the ID of the server that holds the session.
	Server string `json:"server"`
	// HeartbeatMs is how often the agent heartbeats.
	HeartbeatMs int64 `json:"heartbeat_ms"`
}

// Heartbeat says the node is alive.
type Heartbeat struct {
	// Sandboxes counts the sandboxes the node runs.
	Sandboxes int `json:"sandboxes"`
	// Trust is the hash (pki.BundleHash) of the CAs the node trusts, and
	// Issuer the hash of the CA of its certificate: how a rotation of the
	// cluster CA knows the node has taken a step.
	Trust  string `json:"trust,omitempty"`
	Issuer string `json:"issuer,omitempty"`
}

// HeartbeatReply names the CAs the cluster trusts and the one that signs
// now. A node whose own differ renews its certificate, which brings both.
type HeartbeatReply struct {
	Trust  string `json:"trust,omitempty"`
	Signer string `json:"signer,omitempty"`
}

// RenewRequest asks for a new certificate for the calling node.
type RenewRequest struct {
	CSR string `json:"csr"`
}

// RenewReply is the new certificate, and the CAs the cluster trusts now
// (PEM, the signing CA first).
type RenewReply struct {
	Cert string `json:"cert"`
	CA   string `json:"ca,omitempty"`
}

// MaxJoinFrame bounds a join frame: a token, a CSR, a name and labels.
const MaxJoinFrame = 64 << 10

// WriteFrame writes v as one length-prefixed JSON frame.
func WriteFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > MaxJoinFrame {
		return errdefs.New(errdefs.TooLarge, "a join frame of %d bytes is over the %d byte limit", len(b), MaxJoinFrame)
	}
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), uint32(len(b)))
	_, err = w.Write(append(buf, b...))
	return err
}

// ReadFrame reads one frame written by WriteFrame into v.
func ReadFrame(r io.Reader, v any) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > MaxJoinFrame {
		return errdefs.New(errdefs.TooLarge, "a join frame of %d bytes is over the %d byte limit", size, MaxJoinFrame)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "decode a join frame")
	}
	return nil
}

// TokenPrefix starts every join token (its format's version).
const TokenPrefix = "den1"

// Token is a join token: den1.<CA sha256 hex>.<id>.<secret>. The CA hash
// lets an agent check the server before it has a certificate; the store
// keeps the ID and the secret's hash.
type Token struct {
	// CAHash is the cluster CA's hash as pki.CA.Hash gives it
	// ("sha256:<hex>").
	CAHash string
	ID     string
	Secret string
}

// NewToken makes a token with a fresh ID and secret for the CA of caHash.
func NewToken(caHash string) (Token, error) {
	id, secret := make([]byte, 6), make([]byte, 20)
	if _, err := rand.Read(id); err != nil {
		return Token{}, err
	}
	if _, err := rand.Read(secret); err != nil {
		return Token{}, err
	}
	return Token{CAHash: caHash, ID: hex.EncodeToString(id), Secret: hex.EncodeToString(secret)}, nil
}

// String is the token as an operator passes it to den agent.
func (t Token) String() string {
	return strings.Join([]string{TokenPrefix, strings.TrimPrefix(t.CAHash, "sha256:"), t.ID, t.Secret}, ".")
}

// SecretHash is what the store keeps of the secret.
func (t Token) SecretHash() string { return HashSecret(t.Secret) }

// HashSecret is the hex SHA-256 of a token's secret.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// ParseToken reads a token printed by Token.String. Its errors never
// repeat the secret.
func ParseToken(s string) (Token, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	bad := func(why string) (Token, error) {
		return Token{}, errdefs.New(errdefs.InvalidArgument, "malformed join token: %s (want %s.<CA hash>.<id>.<secret>, as den token create prints it)", why, TokenPrefix)
	}
	switch {
	case len(parts) != 4:
		return bad(fmt.Sprintf("%d dot-separated parts, want 4", len(parts)))
	case parts[0] != TokenPrefix:
		return bad("it does not start with " + TokenPrefix)
	case !isHex(parts[1], 64, 64):
		return bad("the CA hash is not 64 hex digits")
	case !isHex(parts[2], 6, 32):
		return bad("the ID is not 6-32 hex digits")
	case !isHex(parts[3], 32, 128):
		return bad("the secret is not 32-128 hex digits")
	}
	return Token{CAHash: "sha256:" + parts[1], ID: parts[2], Secret: parts[3]}, nil
}

func isHex(s string, minLen, maxLen int) bool {
	if len(s) < minLen || len(s) > maxLen {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// JoinTLSConfig is the TLS configuration of a join: no client
// certificate, and a server accepted only if it presents a certificate of
// role server chained to a CA certificate, sent along, whose hash is
// caHash.
func JoinTLSConfig(caHash string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The chain is checked below against the token's CA hash, not
		// against a system root or a host name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return VerifyByCAHash(cs.PeerCertificates, caHash)
		},
	}
}

// Join makes one join exchange over c, a connection to a server's node
// listener dialled with JoinTLSConfig(caHash): it sends req and reads the
// answer. A refusal keeps the server's error kind; an answer with a CA
// other than caHash is PermissionDenied.
func Join(c net.Conn, req JoinRequest, caHash string) (JoinResponse, error) {
	var resp JoinResponse
	if err := WriteFrame(c, req); err != nil {
		return resp, errdefs.Wrap(errdefs.Unavailable, err, "send the join request")
	}
	if err := ReadFrame(c, &resp); err != nil {
		return resp, errdefs.Wrap(errdefs.Unavailable, err, "read the answer")
	}
	if resp.Error != nil {
		err := resp.Error.Err()
		return resp, errdefs.Wrap(errdefs.KindOf(err), err, "refused")
	}
	if ca, err := pki.ParseCert([]byte(resp.CA)); err != nil || pki.CertHash(ca) != caHash {
		return resp, errdefs.New(errdefs.PermissionDenied, "the server answered with a CA other than the join token's")
	}
	return resp, nil
}

// VerifyByCAHash checks that certs (a server's chain, leaf first) holds a
// CA certificate of hash caHash that signed the leaf, a server's.
func VerifyByCAHash(certs []*x509.Certificate, caHash string) error {
	if len(certs) == 0 {
		return errors.New("the server sent no certificate")
	}
	var ca *x509.Certificate
	for _, c := range certs[1:] {
		if c.IsCA && pki.CertHash(c) == caHash {
			ca = c
		}
	}
	if ca == nil {
		return errdefs.New(errdefs.PermissionDenied, "the server's certificate does not chain to the CA of the join token (%s): wrong server, wrong token, or the cluster CA was rotated since the token was made (create a new one)", caHash)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return errdefs.Wrap(errdefs.PermissionDenied, err, "the server's certificate is not signed by the join token's CA")
	}
	id, err := pki.IdentityOf(certs[0])
	if err != nil {
		return err
	}
	if id.Role != pki.RoleServer {
		return errdefs.New(errdefs.PermissionDenied, "the peer is a %s, not a den server", id.Role)
	}
	return nil
}

// Limits of what a node says about itself.
const (
	MaxLabels        = 32
	maxLabelKeyLen   = 63
	maxLabelValueLen = 253
)

// ValidateLabels checks node labels: at most MaxLabels, keys of 1-63
// characters of a-z, 0-9, '-', '_', '.' and '/', values of at most 253
// printable ASCII characters.
func ValidateLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return errdefs.New(errdefs.InvalidArgument, "%d labels: at most %d are allowed", len(labels), MaxLabels)
	}
	for k, v := range labels {
		if k == "" || len(k) > maxLabelKeyLen || strings.Trim(k, "abcdefghijklmnopqrstuvwxyz0123456789-_./") != "" {
			return errdefs.New(errdefs.InvalidArgument, "label key %q must be 1-%d characters of a-z, 0-9, '-', '_', '.' and '/'", k, maxLabelKeyLen)
		}
		if len(v) > maxLabelValueLen || strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
			return errdefs.New(errdefs.InvalidArgument, "label %s: the value must be at most %d printable ASCII characters", k, maxLabelValueLen)
		}
	}
	return nil
}

// ValidatePool checks a pool name: empty (the shared pool) or a valid ID.
func ValidatePool(pool string) error {
	if pool == "" {
		return nil
	}
	if err := pki.ValidID(pool); err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "pool name")
	}
	return nil
}

// ValidateCapacity checks that a capacity is finite and not negative.
func ValidateCapacity(c Capacity) error {
	if !(c.CPUs >= 0 && c.CPUs < 1<<20) || c.MemoryMB < 0 || c.DiskMB < 0 {
		return errdefs.New(errdefs.InvalidArgument, "capacity %+v: values must be finite and not negative", c)
	}
	return nil
}

// ParseLabels reads labels written as k=v,k2=v2 (the CLI's form) and
// validates them. An empty string is no labels.
func ParseLabels(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, errdefs.New(errdefs.InvalidArgument, "label %q: want key=value", kv)
		}
		if _, dup := out[k]; dup {
			return nil, errdefs.New(errdefs.InvalidArgument, "label %q is given twice", k)
		}
		out[k] = v
	}
	return out, ValidateLabels(out)
}
