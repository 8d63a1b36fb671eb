package daemon

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Command is `den up`.
func Command(version string) *cobra.Command {
	var cfg Config
	var noBase bool
	var logLevel string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run den on this machine: API server and a local gVisor node in one process",
		Long: `Run den on this machine: the control plane and a local node in one process.

On start it prints DEN_URL=... and DEN_API_KEY=..., then E2B_API_URL=...,
E2B_SANDBOX_URL=... and E2B_API_KEY=... (eval-able; the unmodified e2b SDKs
run against den with them), then DEN_SSH=... (the SSH gateway: ssh -p PORT
SANDBOX@HOST with a key added by den ssh-key add), and writes them to
<data-dir>/env, where the den CLI and SDKs find them. Ctrl-C stops den; running
sandboxes keep running and are reattached by the next den up on the same data dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dd, err := cmd.Flags().GetString("data-dir"); err == nil && dd != "" {
				cfg.DataDir = dd
			} else if dd := os.Getenv("DEN_DATA_DIR"); dd != "" {
				cfg.DataDir = dd
			}
			cfg.BuildBase, cfg.Version = !noBase, version
			if !cmd.Flags().Changed("ssh-listen") {
				cfg.SSHListen = defaultSSHListen(cfg.Listen)
			}
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lvl}))
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return Run(ctx, cfg, cmd.OutOrStdout(), cmd.ErrOrStderr(), log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:7070", "API address (host:port; port 0 picks a free one)")
	f.StringVar(&cfg.SandboxListen, "sandbox-listen", "", "address of E2B sandbox traffic, E2B_SANDBOX_URL (host:port; default: the --listen port + 1, or a free port when that is 0)")
	f.StringVar(&cfg.SSHListen, "ssh-listen", "127.0.0.1:2222", "address of the SSH gateway (host:port, or off; default 127.0.0.1:2222, a free port when the --listen port is 0)")
	f.StringVar(&cfg.Domain, "domain", "localhost", "domain of E2B sandbox host names <port>-<sandbox-id>.<domain>")
	f.StringVar(&cfg.RunscPath, "runsc", "", "path of runsc (default: next to den, then $PATH)")
	f.StringVar(&cfg.GuestBinary, "guest", "", "path of the static den-guest binary (default: next to den, then $PATH)")
	f.StringVar(&cfg.Platform, "platform", "", "gVisor platform: systrap or ptrace (default: detect)")
	f.StringVar(&cfg.HostSettings, "host-settings", "adjust", hostSettingsUsage)
	f.StringSliceVar(&cfg.Runtimes, "runtimes", nil, "sandbox runtimes, the default first: gvisor, qemu (default: gvisor, and qemu when qemu-system-x86_64 is installed)")
	f.StringVar(&cfg.NodeID, "node-id", "local", "name of the local node")
	f.IntVar(&cfg.WarmPool, "warm-pool", 2, "spare sandboxes kept started per recently used shape, for fast creates (0 = off)")
	f.BoolVar(&cfg.NoNetwork, "no-network", false, "give sandboxes no network (loopback only)")
	f.StringSliceVar(&cfg.SandboxDNS, "sandbox-dns", nil, "upstream DNS servers (host:port) of den's resolver for sandboxes (default: the host's /etc/resolv.conf)")
	f.StringVar(&cfg.SandboxCIDR, "sandbox-cidr", "", "IPv4 /16 of sandbox addresses (default: a free one of 10.88.0.0/16-10.127.0.0/16)")
	f.IntVar(&cfg.VMWarmPool, "vm-warm-pool", 1, "spare VMs of the qemu runtime kept booted per recently used shape (0 = off; each holds its memory)")
	f.BoolVar(&noBase, "no-base", false, "do not build the Debian base image on first start")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return cmd
}
