package server

import (
	"context"
	"net"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/sshgw"
)

// SSHBackend is what the SSH gateway (internal/sshgw) needs of the
// server: logins checked against the tenants' SSH keys, sandboxes woken
// and counted as active while a connection lasts, and guest streams.
type SSHBackend struct{ s *Server }

// SSHBackend returns the server's backend for the SSH gateway.
func (s *Server) SSHBackend() *SSHBackend { return &SSHBackend{s: s} }

// Authorize finds the sandbox user names (an ID or a name) among the
// sandboxes of the tenants that registered the key with fingerprint fp.
// A key no tenant has, a sandbox that does not exist and another
// tenant's sandbox are the same NotFound.
func (b *SSHBackend) Authorize(_ context.Context, user, fp string) (sshgw.Sandbox, error) {
	keys, err := b.s.cfg.Store.Snapshot().SSHKeysByFingerprint(fp)
	if err != nil {
		return sshgw.Sandbox{}, err
	}
	for _, k := range keys {
		if sb, err := b.s.Inspect(Principal{Tenant: k.Tenant}, user); err == nil {
			return sshgw.Sandbox{ID: sb.ID, Name: sb.Name}, nil
		}
	}
	return sshgw.Sandbox{}, errdefs.New(errdefs.NotFound, "no sandbox %q for key %s", user, fp)
}

// Begin resumes sandbox id when it is suspended and counts it as active
// until end is called: an open SSH connection keeps it from going idle.
func (b *SSHBackend) Begin(ctx context.Context, id string) (end func(), err error) {
	if _, err := b.s.WakeSandbox(ctx, id); err != nil {
		return nil, err
	}
	b.s.activity.begin(id, b.s.cfg.Now())
	return func() { b.s.activity.end(id, b.s.cfg.Now()) }, nil
}

// DialGuest opens a connection to sandbox id's guest agent.
func (b *SSHBackend) DialGuest(ctx context.Context, id string) (net.Conn, error) {
	return b.s.cfg.Node.DialGuest(ctx, id)
}

// DialPort opens a tunnel to 127.0.0.1:port inside sandbox id.
func (b *SSHBackend) DialPort(ctx context.Context, id string, port int) (net.Conn, error) {
	return b.s.dialPort(ctx, id, port)
}
