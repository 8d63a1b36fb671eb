package daemon

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/nodeproto"
	"github.com/denhq/den/internal/pki"
)

// ServerConfig is the configuration of `den server`: one server of den's
// control plane (state, API), without a local sandbox node.
type ServerConfig struct {
	// DataDir holds the server's state (raft log, snapshots), its image
	// store and its env file.
	DataDir string
	// ID is the server's stable raft ID; default: the host name. It must
	// not change across restarts of one data dir.
	ID string
	// Listen is the API address (den's /v1 and E2B's control plane); port
	// 0 picks a free one.
	Listen string
	// SandboxListen is the address of E2B sandbox traffic
	// (E2B_SANDBOX_URL); default: Listen's port + 1 (a free port when
	// that is 0).
	SandboxListen string
	// Domain is the suffix of E2B sandbox host names
	// <port>-<sandbox-id>.<domain>; default "localhost".
	Domain string
	// ClusterListen is the cluster port's address: raft, write forwarding
	// and joins between servers, mutual TLS. Default 0.0.0.0:7301.
	ClusterListen string
	// Advertise is the cluster address the other servers dial (host:port).
	// Default: ClusterListen's host when it is a specific address, else
	// the host's first non-loopback IPv4 address; ClusterListen's port.
	Advertise string
	// BootstrapExpect is the size of the first cluster (1, 3 or 5); 0 to
	// only join an existing cluster.
	BootstrapExpect int
	// Join are cluster addresses of other servers.
	Join []string
	// CADir holds the cluster CA (ca.pem, ca-key.pem); default
	// <DataDir>/ca. The first server creates it when missing; the
	// others need a copy, or a server join token (Token).
	CADir string
	// Token is a server join token (den token create --server): a server
	// whose CADir is empty gets its certificate with it from another
	// server's node listener (TokenVia), joins, then reads the CA from the
	// replicated state and keeps it in CADir.
	Token string
	// TokenVia are node listener addresses (host:port) to present Token
	// to; default: each Join host at port 7302.
	TokenVia []string
	// NodeListen is the address agents dial (mutual TLS). Default
	// 0.0.0.0:7302.
	NodeListen string
	// HeartbeatTTL is how long a silent agent stays ready; 0 means the
	// node listener's default.
	HeartbeatTTL time.Duration
	Version      string
}

// Validate fills defaults and checks the configuration.
func (c *ServerConfig) Validate() error {
	var err error
	if c.DataDir, err = absDataDir(c.DataDir); err != nil {
		return err
	}
	if c.ID == "" {
		h, _ := os.Hostname()
		c.ID = strings.ToLower(h)
	}
	if err := pki.ValidID(c.ID); err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "--id (default: the host name)")
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:7070"
	}
	if c.SandboxListen == "" {
		c.SandboxListen = nextPort(c.Listen)
	}
	if c.Domain == "" {
		c.Domain = "localhost"
	}
	if c.ClusterListen == "" {
		c.ClusterListen = "0.0.0.0:7301"
	}
	if c.NodeListen == "" {
		c.NodeListen = "0.0.0.0:7302"
	}
	if c.CADir == "" {
		c.CADir = filepath.Join(c.DataDir, "ca")
	}
	for flag, addr := range map[string]string{"--listen": c.Listen, "--sandbox-listen": c.SandboxListen,
		"--cluster-listen": c.ClusterListen, "--node-listen": c.NodeListen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return errdefs.New(errdefs.InvalidArgument, "%s %q is not host:port (e.g. 127.0.0.1:7070)", flag, addr)
		}
	}
	if c.Advertise != "" {
		if h, p, err := net.SplitHostPort(c.Advertise); err != nil || h == "" || p == "0" {
			return errdefs.New(errdefs.InvalidArgument, "--advertise %q is not host:port of this server (e.g. 10.0.0.1:7301)", c.Advertise)
		}
	}
	switch c.BootstrapExpect {
	case 0, 1, 3, 5:
	default:
		return errdefs.New(errdefs.InvalidArgument, "--bootstrap-expect must be 1, 3 or 5, got %d", c.BootstrapExpect)
	}
	if c.BootstrapExpect == 0 && len(c.Join) == 0 {
		return errdefs.New(errdefs.InvalidArgument, "set --bootstrap-expect (1, 3 or 5) to form a new cluster, or --join ADDR to join one")
	}
	for _, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return errdefs.New(errdefs.InvalidArgument, "--join %q is not the host:port of another server's cluster port (e.g. 10.0.0.2:7301)", j)
		}
	}
	if c.Token == "" && len(c.TokenVia) > 0 {
		return errdefs.New(errdefs.InvalidArgument, "--token-via needs --token")
	}
	if c.Token != "" {
		if len(c.Join) == 0 {
			return errdefs.New(errdefs.InvalidArgument, "--token joins an existing cluster: give --join ADDR as well")
		}
		if _, err := nodeproto.ParseToken(c.Token); err != nil {
			return errdefs.Wrap(errdefs.InvalidArgument, err, "--token")
		}
		if len(c.TokenVia) == 0 {
			for _, j := range c.Join {
				h, _, _ := net.SplitHostPort(j)
				c.TokenVia = append(c.TokenVia, net.JoinHostPort(h, "7302"))
			}
		}
		for _, v := range c.TokenVia {
			if _, _, err := net.SplitHostPort(v); err != nil {
				return errdefs.New(errdefs.InvalidArgument, "--token-via %q is not the host:port of another server's node listener (e.g. 10.0.0.2:7302)", v)
			}
		}
	}
	return nil
}

// envFile is where den server publishes its URL and admin key.
func (c *ServerConfig) envFile() string { return filepath.Join(c.DataDir, "env") }

// advertise is the cluster address others dial, given the bound listener.
func (c *ServerConfig) advertise(bound net.Addr) (string, error) {
	if c.Advertise != "" {
		return c.Advertise, nil
	}
	host, _, _ := net.SplitHostPort(c.ClusterListen)
	_, port, err := net.SplitHostPort(bound.String())
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return net.JoinHostPort(host, port), nil
	}
	ip, err := firstLANAddr()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(ip, port), nil
}

// firstLANAddr is the host's first non-loopback IPv4 address.
func firstLANAddr() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", errdefs.Wrap(errdefs.InvalidArgument, err, "find an address to advertise: set --advertise")
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String(), nil
		}
	}
	return "", errdefs.New(errdefs.InvalidArgument, "no non-loopback IPv4 address to advertise to the other servers: set --advertise HOST:PORT")
}
