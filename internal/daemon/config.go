// Package daemon runs `den up`: the control plane (store, API server) and a
// local node (gVisor driver, image store) in one process. It only wires the
// pieces together and owns their lifetimes.
package daemon

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/denhq/den/internal/driver/gvisor"
	"github.com/denhq/den/internal/errdefs"
)

// Config is the configuration of `den up`.
type Config struct {
	// DataDir holds all state: raft log, images, sandboxes, the env file.
	DataDir string
	// Listen is the API address; port 0 picks a free one.
	Listen string
	// SandboxListen is the address of E2B sandbox traffic (E2B_SANDBOX_URL);
	// port 0 picks a free one. Default: the API's host and port + 1 (so
	// E2B_SANDBOX_URL stays the same across restarts), or port 0 when the
	// API's port is 0.
	SandboxListen string
	// SSHListen is the SSH gateway's address (`ssh -p PORT ID@host`);
	// "" or "off" turns the gateway off. `den up` defaults it to
	// 127.0.0.1:2222, or port 0 when the API's port is 0.
	SSHListen string
	// Domain is the suffix of E2B sandbox host names
	// (<port>-<sandboxID>.<domain>); default "localhost".
	Domain string
	// NodeID names the local node; default "local".
	NodeID string
	// RunscPath and GuestBinary locate runsc and the static den-guest;
	// empty means next to the den executable, then $PATH.
	RunscPath   string
	GuestBinary string
	// Platform is the gVisor platform: "" (auto), "systrap" or "ptrace".
	Platform string
	// HostSettings is the gVisor driver's policy for host kernel settings
	// (gvisor.Config.HostSettings); "" is adjust.
	HostSettings string
	// WarmPool is the number of spare sandboxes kept started for each of
	// the most recently used sandbox shapes (0 turns the pool off).
	WarmPool int
	// VMWarmPool is WarmPool for the qemu runtime's VMs.
	VMWarmPool int
	// NoNetwork leaves sandboxes without networks (loopback only).
	NoNetwork bool
	// SandboxCIDR is the IPv4 /16 of sandbox addresses; empty: a free one
	// of 10.88.0.0/16 ... 10.127.0.0/16, kept across restarts.
	SandboxCIDR string
	// SandboxDNS are the upstream servers (host:port) of den's resolver;
	// empty: the host's /etc/resolv.conf.
	SandboxDNS []string
	// Runtimes are the sandbox runtimes, the default first: "gvisor"
	// (required: image builds run on it) and "qemu". Nil means gvisor,
	// plus qemu when qemu-system-x86_64 is on $PATH.
	Runtimes []string
	// BuildBase builds the Debian `base` image on first start (minutes).
	BuildBase bool
	Version   string
}

// DefaultDataDir is /var/lib/den for root, else ~/.local/share/den.
func DefaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/den"
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "den")
	}
	return filepath.Join(home, ".local", "share", "den")
}

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir()
	}
	var err error
	if c.DataDir, err = absDataDir(c.DataDir); err != nil {
		return err
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:7070"
	}
	if c.NodeID == "" {
		c.NodeID = "local"
	}
	if c.SandboxListen == "" {
		c.SandboxListen = nextPort(c.Listen)
	}
	if c.Domain == "" {
		c.Domain = "localhost"
	}
	if os.Geteuid() != 0 {
		return errdefs.New(errdefs.FailedPrecondition, "den up must run as root (gVisor sandboxes need mounts and cgroups): run `sudo den up` or `make up`")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return errdefs.New(errdefs.InvalidArgument, "--listen %q is not host:port (e.g. 127.0.0.1:7070)", c.Listen)
	}
	if c.SSHListen == "off" {
		c.SSHListen = ""
	}
	if _, _, err := net.SplitHostPort(c.SSHListen); c.SSHListen != "" && err != nil {
		return errdefs.New(errdefs.InvalidArgument, "--ssh-listen %q is not host:port (e.g. 127.0.0.1:2222) or off", c.SSHListen)
	}
	if _, _, err := net.SplitHostPort(c.SandboxListen); err != nil {
		return errdefs.New(errdefs.InvalidArgument, "--sandbox-listen %q is not host:port (e.g. 127.0.0.1:0)", c.SandboxListen)
	}
	if c.WarmPool < 0 || c.WarmPool > 64 {
		return errdefs.New(errdefs.InvalidArgument, "--warm-pool must be between 0 and 64, got %d", c.WarmPool)
	}
	for _, s := range c.SandboxDNS {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return errdefs.New(errdefs.InvalidArgument, "--sandbox-dns %q is not host:port (e.g. 1.1.1.1:53)", s)
		}
	}
	if c.VMWarmPool < 0 || c.VMWarmPool > 64 {
		return errdefs.New(errdefs.InvalidArgument, "--vm-warm-pool must be between 0 and 64, got %d", c.VMWarmPool)
	}
	if err := c.validateNode(); err != nil {
		return err
	}
	if err := c.validateRuntimes(); err != nil {
		return err
	}
	if c.RunscPath, err = findBinary(c.RunscPath, "runsc"); err != nil {
		return err
	}
	c.GuestBinary, err = findBinary(c.GuestBinary, "den-guest")
	return err
}

// absDataDir makes dir absolute: sandboxes outlive den and record paths
// under the data dir, which must not depend on where den was started.
func absDataDir(dir string) (string, error) {
	if dir == "" {
		dir = DefaultDataDir()
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", errdefs.Wrap(errdefs.InvalidArgument, err, "--data-dir %q", dir)
	}
	return abs, nil
}

// hostSettingsUsage is the help of den up's and den agent's
// --host-settings.
const hostSettingsUsage = "host kernel settings gVisor's speed depends on (shmem huge pages, THP defrag, max_map_count): adjust (set gVisor's recommended values where they differ), enforce (as adjust, failing starts when one cannot be set), check (log only) or ignore"

// validateNode checks what a node's sandboxes run with (den up's and den
// agent's): the gVisor platform, host settings policy and sandbox CIDR.
func (c *Config) validateNode() error {
	switch c.Platform {
	case "", "systrap", "ptrace":
	default:
		return errdefs.New(errdefs.InvalidArgument, "--platform %q is unknown: use systrap or ptrace", c.Platform)
	}
	if c.HostSettings != "" && !slices.Contains(gvisor.HostSettingsPolicies, c.HostSettings) {
		return errdefs.New(errdefs.InvalidArgument, "--host-settings %q is unknown: use one of %s", c.HostSettings, strings.Join(gvisor.HostSettingsPolicies, ", "))
	}
	if c.SandboxCIDR != "" {
		if p, err := netip.ParsePrefix(c.SandboxCIDR); err != nil || !p.Addr().Is4() || p.Bits() != 16 {
			return errdefs.New(errdefs.InvalidArgument, "--sandbox-cidr %q is not an IPv4 /16 (e.g. 10.88.0.0/16)", c.SandboxCIDR)
		}
	}
	return nil
}

// findBinary returns explicit if set, else name next to the den executable,
// else name on $PATH.
func findBinary(explicit, name string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", errdefs.New(errdefs.InvalidArgument, "%s not found at %s", name, explicit)
		}
		return filepath.Abs(explicit)
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", errdefs.New(errdefs.InvalidArgument,
			"%s not found next to den or on PATH: run `make build` (it builds bin/%s)", name, name)
	}
	return p, nil
}

// envFile is where den up publishes how to reach it.
func (c *Config) envFile() string { return filepath.Join(c.DataDir, "env") }

func (c *Config) String() string { return fmt.Sprintf("data-dir=%s listen=%s", c.DataDir, c.Listen) }

// nextPort is addr with its port plus one; port 0 (or an unparsable
// address, which Validate reports) stays 0.
func nextPort(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "127.0.0.1:0"
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 || n >= 65535 {
		return net.JoinHostPort(host, "0")
	}
	return net.JoinHostPort(host, strconv.Itoa(n+1))
}

// validateRuntimes fills the default runtimes and checks the list.
func (c *Config) validateRuntimes() error {
	if c.Runtimes == nil {
		c.Runtimes = []string{"gvisor"}
		if _, err := exec.LookPath("qemu-system-x86_64"); err == nil {
			c.Runtimes = append(c.Runtimes, "qemu")
		}
		return nil
	}
	seen := map[string]bool{}
	for _, r := range c.Runtimes {
		switch {
		case r != "gvisor" && r != "qemu":
			return errdefs.New(errdefs.InvalidArgument, "--runtimes: unknown runtime %q: use gvisor and qemu", r)
		case seen[r]:
			return errdefs.New(errdefs.InvalidArgument, "--runtimes: %s is listed twice", r)
		}
		seen[r] = true
	}
	if !seen["gvisor"] {
		return errdefs.New(errdefs.InvalidArgument, "--runtimes must include gvisor: image builds run on it")
	}
	if seen["qemu"] {
		if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
			return errdefs.New(errdefs.FailedPrecondition, "--runtimes qemu: qemu-system-x86_64 is not installed: apt-get install qemu-system-x86 qemu-utils (or run make up)")
		}
	}
	return nil
}
