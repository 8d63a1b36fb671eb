package daemon

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// ServerCommand is `den server`: one server of a 1, 3 or 5 server control
// plane. The CLI adds `den server members` to it (see cli.NewRoot).
func ServerCommand(version string) *cobra.Command {
	var cfg ServerConfig
	var logLevel string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a den server: replicated state, the API and the scheduler of the agents' nodes",
		Long: `Run one server of den's control plane: the raft-replicated state, the API
(/v1) and, on the leader, the scheduler that places sandboxes on the nodes
of the agents that dial in (den token create, then den agent --server
HOST:7302 --token T on each host). A follower passes API requests to the
leader over the cluster port, and sends the agents that dial it on to the
leader.

Form a cluster of 3 (or 1 or 5) with the same --bootstrap-expect on each and
--join naming the others' cluster ports; start later servers with --join only.
Servers talk to each other over --cluster-listen with mutual TLS: the first
server (the one without --join) creates the cluster CA in --ca-dir when it is
missing and records it in the replicated state. Either copy that directory to
the other servers before they start, or give a later server a server join
token instead (den token create --server, then den server --join ADDR --token
T): it gets its certificate with the token from another server's node
listener, joins, and reads the CA from the state into its own --ca-dir. A
write on any server is forwarded to the leader; a restart with existing state
rejoins on its own.

On start it prints DEN_URL=... and DEN_API_KEY=... (an admin key of this
server) and writes them to <data-dir>/env.`,
		Example: `  den server --id s1 --data-dir /var/lib/den --bootstrap-expect 3 --advertise 10.0.0.1:7301 --listen 0.0.0.0:7070
  den server --id s2 --data-dir /var/lib/den --bootstrap-expect 3 --advertise 10.0.0.2:7301 --listen 0.0.0.0:7070 --join 10.0.0.1:7301
  den server members
  den token create --server       # on a running cluster; then, on a new host with no CA directory:
  den server --id s4 --data-dir /var/lib/den --advertise 10.0.0.4:7301 --listen 0.0.0.0:7070 --join 10.0.0.1:7301 --token den1.…`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dd, err := cmd.Flags().GetString("data-dir"); err == nil && dd != "" {
				cfg.DataDir = dd
			} else if dd := os.Getenv("DEN_DATA_DIR"); dd != "" {
				cfg.DataDir = dd
			}
			cfg.Version = version
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lvl}))
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			tuneGC()
			return RunServer(ctx, cfg, cmd.OutOrStdout(), log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ID, "id", "", "this server's ID, stable across restarts (default: the host name)")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:7070", "API address, den's and E2B's (host:port; port 0 picks a free one)")
	f.StringVar(&cfg.SandboxListen, "sandbox-listen", "", "address of E2B sandbox traffic, E2B_SANDBOX_URL (host:port; default: the --listen port + 1, or a free port when that is 0)")
	f.StringVar(&cfg.Domain, "domain", "localhost", "domain of E2B sandbox host names <port>-<sandbox-id>.<domain>")
	f.StringVar(&cfg.ClusterListen, "cluster-listen", "0.0.0.0:7301", "cluster port: raft, write forwarding and joins between servers (mutual TLS)")
	f.StringVar(&cfg.Advertise, "advertise", "", "cluster address the other servers dial (host:port; default: --cluster-listen's host if specific, else the first non-loopback IPv4 address)")
	f.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", 0, "size of the new cluster to form: 1, 3 or 5 (0: only --join an existing one)")
	f.StringSliceVar(&cfg.Join, "join", nil, "cluster addresses of other servers (host:port, comma-separated)")
	f.StringVar(&cfg.CADir, "ca-dir", "", "directory of the cluster CA, ca.pem and ca-key.pem (default: <data-dir>/ca)")
	f.StringVar(&cfg.Token, "token", "", "a server join token (den token create --server): with no CA in --ca-dir, get this server's certificate with it, then the CA from the cluster")
	f.StringSliceVar(&cfg.TokenVia, "token-via", nil, "node listener addresses of other servers to present --token to (host:port; default: each --join host at port 7302)")
	f.StringVar(&cfg.NodeListen, "node-listen", "0.0.0.0:7302", "address agents dial (den agent --server), mutual TLS; agents need no inbound port")
	f.DurationVar(&cfg.HeartbeatTTL, "heartbeat-ttl", 0, "how long a silent agent stays ready before it is marked down and its sandboxes lost (default 15s)")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return cmd
}
