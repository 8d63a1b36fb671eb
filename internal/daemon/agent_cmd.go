package daemon

import (
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/agent"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/hostmem"
	"github.com/denhq/den/internal/nodeproto"
)

// agentFlags are den agent's flags.
type agentFlags struct {
	servers, token, name, labels, pool, logLevel string
	runtimes                                     []string
	sim                                          int
	simCPUs                                      float64
	simMemoryMB                                  int64
}

// AgentCommand is `den agent`: a data-plane node that dials out to the
// servers. For now it registers and heartbeats; the sandbox node is wired
// onto its link separately.
func AgentCommand(version string) *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a node: join the cluster with a token and keep one outbound mutual-TLS link to the servers",
		Long: `Run a den node. On its first start the agent joins with a token (den token
create on a server prints one; or set DEN_JOIN_TOKEN), checks the server
against the CA hash the token carries, and saves its key, certificate and node
ID in <data-dir>/agent. Later starts reuse them; no token is needed. The node
dials out to any of --server and needs no inbound port.

--sim N runs N simulated nodes in this process, each with its own identity
(<data-dir>/agent/sim-NNN) and its own connection; a token of --uses N admits
them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config(cmd, version)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if f.sim > 0 {
				cfg.Capacity = nodeproto.Capacity{CPUs: f.simCPUs, MemoryMB: f.simMemoryMB, DiskMB: agent.SimCapacity.DiskMB}
				cfg.Runtimes = []string{"sim"}
				return agent.RunSim(ctx, f.sim, cfg)
			}
			return agent.Run(ctx, cfg)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.servers, "server", "", "node addresses of the servers, host:port[,host:port...] (required)")
	fl.StringVar(&f.token, "token", "", "join token, needed on the first start only (default: $DEN_JOIN_TOKEN)")
	fl.StringVar(&f.name, "name", "", "node name (default: the host name)")
	fl.StringVar(&f.labels, "labels", "", "node labels, key=value[,key=value...]")
	fl.StringVar(&f.pool, "pool", "", "node pool (default: the token's, else the shared pool)")
	fl.StringSliceVar(&f.runtimes, "runtimes", []string{"gvisor"}, "sandbox runtimes the node offers")
	fl.IntVar(&f.sim, "sim", 0, "run this many simulated nodes instead of this host's")
	fl.Float64Var(&f.simCPUs, "sim-cpus", agent.SimCapacity.CPUs, "CPUs of each simulated node")
	fl.Int64Var(&f.simMemoryMB, "sim-memory-mb", agent.SimCapacity.MemoryMB, "memory of each simulated node, in MB")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return cmd
}

// config turns the flags into the agent's configuration.
func (f *agentFlags) config(cmd *cobra.Command, version string) (agent.Config, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.logLevel)); err != nil {
		return agent.Config{}, errdefs.Wrap(errdefs.InvalidArgument, err, "--log-level")
	}
	labels, err := nodeproto.ParseLabels(f.labels)
	if err != nil {
		return agent.Config{}, err
	}
	var servers []string
	for _, s := range strings.Split(f.servers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			servers = append(servers, s)
		}
	}
	dataDir := DefaultDataDir()
	if dd, err := cmd.Flags().GetString("data-dir"); err == nil && dd != "" {
		dataDir = dd
	} else if dd := os.Getenv("DEN_DATA_DIR"); dd != "" {
		dataDir = dd
	}
	token := f.token
	if token == "" {
		token = os.Getenv("DEN_JOIN_TOKEN")
	}
	name := f.name
	if name == "" {
		name = hostName()
	}
	dir := filepath.Join(dataDir, "agent")
	return agent.Config{
		Servers: servers, Token: token, DataDir: dir, Name: name, Labels: labels, Pool: f.pool,
		Capacity: hostCapacity(dir), Runtimes: f.runtimes, Version: version,
		Logger: slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lvl})),
	}, nil
}

// hostName is the host's name as a node name: lower case, characters
// other than a-z, 0-9, '-', '_' and '.' dropped, at most 63.
func hostName() string {
	h, _ := os.Hostname()
	h = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return -1
	}, strings.ToLower(h))
	if len(h) > 63 {
		h = h[:63]
	}
	if h == "" {
		h = "node"
	}
	return h
}

// hostCapacity is this host's CPUs, memory and the disk free under dir
// (or its parent, before the agent made it).
func hostCapacity(dir string) nodeproto.Capacity {
	c := nodeproto.Capacity{CPUs: float64(runtime.NumCPU())}
	if m, err := hostmem.Read(); err == nil {
		c.MemoryMB = m.TotalMB
	}
	for d := dir; ; d = filepath.Dir(d) {
		var st unix.Statfs_t
		if err := unix.Statfs(d, &st); err == nil {
			c.DiskMB = int64(st.Bavail) * st.Bsize >> 20
			return c
		}
		if d == filepath.Dir(d) {
			return c
		}
	}
}
