package daemon

import (
	"log/slog"
	"net"
	"path/filepath"

	"github.com/denhq/den/internal/server"
	"github.com/denhq/den/internal/sshgw"
)

// defaultSSHListen is the SSH gateway's address when --ssh-listen is not
// given: port 2222 on the API's host, or a free port when the API's port
// is 0 (tests, several dens on one host).
func defaultSSHListen(apiListen string) string {
	host, port, err := net.SplitHostPort(apiListen)
	if err != nil {
		return "127.0.0.1:2222"
	}
	if port == "0" {
		return net.JoinHostPort(host, "0")
	}
	return net.JoinHostPort(host, "2222")
}

// sshHostKeyPath is where the gateway's host key lives.
func (c *Config) sshHostKeyPath() string {
	return filepath.Join(c.DataDir, "ssh", "host_ed25519_key")
}

// startSSH serves the SSH gateway on ln until the returned gateway is
// closed; its Serve error goes to errc.
func startSSH(cfg Config, srv *server.Server, ln net.Listener, log *slog.Logger, errc chan<- error) (*sshgw.Gateway, error) {
	key, err := sshgw.LoadHostKey(cfg.sshHostKeyPath())
	if err != nil {
		return nil, err
	}
	gw, err := sshgw.New(sshgw.Config{HostKey: key, Backend: srv.SSHBackend(), Logger: log.With("component", "ssh")})
	if err != nil {
		return nil, err
	}
	go func() {
		if err := gw.Serve(ln); err != nil {
			errc <- err
		}
	}()
	return gw, nil
}
