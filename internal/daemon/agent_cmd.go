package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/agent"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/hostmem"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/nodeproto"
	"github.com/denhq/den/internal/noderpc"
)

// agentFlags are den agent's flags.
type agentFlags struct {
	servers, token, name, labels, pool, logLevel string
	metricsListen                                string
	runtimes                                     []string
	sim                                          int
	simCPUs                                      float64
	simMemoryMB                                  int64
	// The sandbox node's: as den up's.
	platform, sandboxCIDR, hostSettings string
	noNetwork                           bool
}

// AgentCommand is `den agent`: a data-plane node that dials out to the
// servers and runs the sandboxes they place on it (agent_node.go).
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
			startPprof(cfg.Logger)
			tuneGC()
			if f.metricsListen != "" {
				cfg.Metrics = agent.NewMetrics()
				stopMetrics, err := serveAgentMetrics(ctx, f.metricsListen, cfg.Metrics, cfg.Logger)
				if err != nil {
					return err
				}
				defer stopMetrics()
			}
			if f.sim > 0 {
				cfg.Capacity = nodeproto.Capacity{CPUs: f.simCPUs, MemoryMB: f.simMemoryMB, DiskMB: agent.SimCapacity.DiskMB}
				cfg.Runtimes = []string{"sim"}
				cfg.Setup = simSetup(cfg.Logger)
				return agent.RunSim(ctx, f.sim, cfg)
			}
			nodeCfg, err := f.nodeConfig(cfg.DataDir, version)
			if err != nil {
				return err
			}
			cfg.Setup = nodeSetup(nodeCfg, cmd.ErrOrStderr(), cfg.Logger)
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
	fl.StringVar(&f.metricsListen, "metrics-listen", "", "serve Prometheus metrics at http://ADDR/metrics (host:port, for a local scraper; default off: the node needs no inbound port)")
	fl.StringVar(&f.platform, "platform", "", "gVisor platform: systrap or ptrace (default: auto)")
	fl.StringVar(&f.hostSettings, "host-settings", "adjust", hostSettingsUsage)
	fl.BoolVar(&f.noNetwork, "no-network", false, "give sandboxes no network (loopback only)")
	fl.StringVar(&f.sandboxCIDR, "sandbox-cidr", "", "IPv4 /16 of sandbox addresses (default: a free one of 10.88.0.0/16 ... 10.127.0.0/16)")
	return cmd
}

// nodeConfig is the configuration of the agent's sandbox node, in den
// up's terms: its state lives beside the agent's identity.
func (f *agentFlags) nodeConfig(agentDir, version string) (Config, error) {
	c := Config{DataDir: filepath.Join(filepath.Dir(agentDir), "node"), Runtimes: f.runtimes, Platform: f.platform, HostSettings: f.hostSettings,
		NoNetwork: f.noNetwork, SandboxCIDR: f.sandboxCIDR, Version: version}
	if os.Geteuid() != 0 {
		return c, errdefs.New(errdefs.FailedPrecondition, "den agent must run as root (gVisor sandboxes need mounts and cgroups), or use --sim N")
	}
	if err := c.validateNode(); err != nil {
		return c, err
	}
	var err error
	if c.RunscPath, err = findBinary(c.RunscPath, "runsc"); err != nil {
		return c, err
	}
	if c.GuestBinary, err = findBinary(c.GuestBinary, "den-guest"); err != nil {
		return c, err
	}
	return c, c.validateRuntimes()
}

// nodeSetup builds the agent's sandbox node once it knows its ID; the
// node reattaches its sandboxes once the first session is up (their
// records are on the servers).
func nodeSetup(nodeCfg Config, errOut io.Writer, log *slog.Logger) func(context.Context, string, *nodelink.Mux) (agent.Hooks, error) {
	return func(ctx context.Context, nodeID string, mux *nodelink.Mux) (agent.Hooks, error) {
		link := &noderpc.Link{}
		n, err := openAgentNode(ctx, nodeCfg, nodeID, link, mux, errOut, log)
		if err != nil {
			return agent.Hooks{}, err
		}
		var recovered sync.Once
		return agent.Hooks{
			OnSession: func(s *nodelink.Session) {
				link.Set(s)
				first := false
				recovered.Do(func() {
					first = true
					go func() {
						if err := n.recover(ctx); err != nil {
							log.Error("reattach sandboxes", "error", err)
							return
						}
						if err := n.node.DropLost(ctx); err != nil {
							log.Error("stop the sandboxes reported lost or deleted", "error", err)
						}
					}()
				})
				if !first {
					// Back after a cut: what the cluster gave up on
					// meanwhile must not run on.
					go func() {
						if err := n.node.DropLost(ctx); err != nil {
							log.Error("stop the sandboxes reported lost", "error", err)
						}
					}()
				}
			},
			Close: n.close,
		}, nil
	}
}

// simSetup builds a simulated node for each agent of --sim.
func simSetup(log *slog.Logger) func(context.Context, string, *nodelink.Mux) (agent.Hooks, error) {
	return func(_ context.Context, nodeID string, mux *nodelink.Mux) (agent.Hooks, error) {
		link := &noderpc.Link{}
		n, err := openSimNode(nodeID, link, mux, log)
		if err != nil {
			return agent.Hooks{}, err
		}
		return agent.Hooks{OnSession: link.Set, Close: n.close}, nil
	}
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

// serveAgentMetrics serves m and the process's Go metrics at
// http://addr/metrics until ctx ends or the returned stop is called.
func serveAgentMetrics(ctx context.Context, addr string, m *agent.Metrics, log *slog.Logger) (stop func(), err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.Collectors()...)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "--metrics-listen %s", addr)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener", "error", err)
		}
	}()
	log.Info("serving metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	stopCtx := context.AfterFunc(ctx, func() { hs.Close() })
	return func() { stopCtx(); hs.Close() }, nil
}
