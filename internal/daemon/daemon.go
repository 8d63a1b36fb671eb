package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/gvisor"
	"github.com/denhq/den/internal/driver/qemu"
	"github.com/denhq/den/internal/e2b"
	"github.com/denhq/den/internal/fsutil"
	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/node"
	"github.com/denhq/den/internal/sandboxnet"
	"github.com/denhq/den/internal/server"
	"github.com/denhq/den/internal/store"
	"github.com/denhq/den/internal/vmkernel"
)

// Run starts den and serves until ctx is cancelled, then shuts down
// cleanly. Sandboxes keep running across a shutdown and are reattached by
// the next Run on the same data dir. out receives the eval-able lines
// (DEN_URL=..., DEN_API_KEY=...); progress and logs go to errOut and log.
func Run(ctx context.Context, cfg Config, out, errOut io.Writer, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir %s: %w", cfg.DataDir, err)
	}
	startPprof(log)
	st, err := store.Open(ctx, store.Config{Dir: filepath.Join(cfg.DataDir, "state"), NodeID: cfg.NodeID, Logger: log})
	if err != nil {
		return fmt.Errorf("open state in %s: %w", cfg.DataDir, err)
	}
	defer st.Close()
	keys, err := ensureKeys(ctx, st, cfg.envFile())
	if err != nil {
		return err
	}
	images, err := prepareImages(ctx, cfg, errOut, log)
	if err != nil {
		return err
	}
	nets := openNetworks(cfg, log)
	if nets != nil {
		defer nets.Close() // the resolver; networks outlive den with their sandboxes
	}
	drivers, err := openDrivers(ctx, cfg, nets, errOut, log)
	if err != nil {
		return err
	}
	defer func() {
		for _, d := range drivers {
			d.Close()
		}
	}()
	n, err := node.New(node.Config{ID: cfg.NodeID, Driver: drivers[0], Runtimes: drivers[1:], Images: images, Store: st, Logger: log,
		SnapshotDir: filepath.Join(cfg.DataDir, "snapshots"), Layers: images, Networks: nets})
	if err != nil {
		return err
	}
	defer n.Close()
	if err := n.Recover(ctx); err != nil {
		return fmt.Errorf("recover sandboxes: %w", err)
	}
	n.StartPools()
	builder, err := newBuilder(cfg.DataDir, images, n, log)
	if err != nil {
		return err
	}
	srv, err := server.New(server.Config{Store: st, Node: n, Images: images, Builder: serverBuilder{builder},
		Version: cfg.Version, Logger: log})
	if err != nil {
		return err
	}
	templates, err := e2b.OpenTemplates(e2b.TemplatesConfig{
		Dir: filepath.Join(cfg.DataDir, "templates"), Builder: templateBuilder{b: builder, images: images}, Logger: log,
	})
	if err != nil {
		return fmt.Errorf("open E2B templates: %w", err)
	}
	defer templates.Close() // after serve: stops builds still running
	srv.Mount(e2b.Routes, e2b.NewAPI(e2b.Config{Service: srv, Domain: cfg.Domain, Logger: log, Templates: templates}))
	traffic := e2b.NewSandboxTraffic(e2b.TrafficConfig{Service: srv, Domain: cfg.Domain})
	return serve(ctx, cfg, srv, traffic, keys, out, log)
}

// apiKeys are the keys den up publishes.
type apiKeys struct{ den, e2b string }

func ensureKeys(ctx context.Context, st *store.Store, envFile string) (apiKeys, error) {
	if err := ensureDefaultTenant(ctx, st); err != nil {
		return apiKeys{}, err
	}
	den, err := ensureAdminKey(ctx, st, envFile)
	if err != nil {
		return apiKeys{}, err
	}
	e2bKey, err := ensureE2BKey(ctx, st, envFile)
	return apiKeys{den: den, e2b: e2bKey}, err
}

// listeners are den up's two listeners: the API (den's /v1 and the E2B
// control plane) and E2B sandbox traffic.
type listeners struct{ api, sandbox, ssh net.Listener } // ssh: nil when off

func listen(cfg Config) (listeners, error) {
	api, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return listeners{}, fmt.Errorf("listen on %s: %w (is another den running? use --listen 127.0.0.1:0)", cfg.Listen, err)
	}
	sb, err := net.Listen("tcp", cfg.SandboxListen)
	if err != nil {
		api.Close()
		return listeners{}, fmt.Errorf("listen on %s: %w (use --sandbox-listen 127.0.0.1:0)", cfg.SandboxListen, err)
	}
	var sshLn net.Listener
	if cfg.SSHListen != "" {
		if sshLn, err = net.Listen("tcp", cfg.SSHListen); err != nil {
			api.Close()
			sb.Close()
			return listeners{}, fmt.Errorf("listen on %s: %w (use --ssh-listen 127.0.0.1:0, or off)", cfg.SSHListen, err)
		}
	}
	return listeners{api: api, sandbox: sb, ssh: sshLn}, nil
}

// envLines are the eval-able lines den up prints and writes to the env file.
func envLines(ls listeners, keys apiKeys) string {
	url := "http://" + ls.api.Addr().String()
	lines := fmt.Sprintf("DEN_URL=%s\nDEN_API_KEY=%s\nE2B_API_URL=%s\nE2B_SANDBOX_URL=%s\nE2B_API_KEY=%s\n",
		url, keys.den, url, "http://"+ls.sandbox.Addr().String(), keys.e2b)
	if ls.ssh != nil {
		lines += "DEN_SSH=" + ls.ssh.Addr().String() + "\n"
	}
	return lines
}

// serve listens, publishes the env file and lines, and serves until ctx ends.
func serve(ctx context.Context, cfg Config, srv *server.Server, traffic http.Handler, keys apiKeys, out io.Writer, log *slog.Logger) error {
	ls, err := listen(cfg)
	if err != nil {
		return err
	}
	env := envLines(ls, keys)
	if err := fsutil.WriteFileAtomic(cfg.envFile(), []byte(env), 0o600); err != nil {
		ls.api.Close()
		ls.sandbox.Close()
		if ls.ssh != nil {
			ls.ssh.Close()
		}
		return err
	}
	fmt.Fprint(out, env)
	log.Info("den is up", "url", "http://"+ls.api.Addr().String(), "sandbox_url", "http://"+ls.sandbox.Addr().String(),
		"data_dir", cfg.DataDir, "env_file", cfg.envFile())

	servers := []*httpServer{
		newHTTPServer(srv.Handler(), defaultHTTPLimits),
		newHTTPServer(traffic, defaultHTTPLimits),
	}
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); srv.Run(bg) }()
	errc := make(chan error, len(servers)+1)
	for i, ln := range []net.Listener{ls.api, ls.sandbox} {
		go func() { errc <- servers[i].Serve(ln) }()
	}
	if ls.ssh != nil {
		gw, gerr := startSSH(cfg, srv, ls.ssh, log, errc)
		if gerr != nil {
			ls.ssh.Close()
			errc <- gerr
		} else {
			defer gw.Close()
			log.Info("ssh gateway up", "addr", ls.ssh.Addr().String())
		}
	}

	select {
	case err = <-errc:
	case <-ctx.Done():
		log.Info("shutting down")
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	for _, hs := range servers {
		if serr := hs.Shutdown(shutCtx); err == nil {
			err = serr
		}
	}
	cancel()
	stopBG()
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// prepareImages opens the image store and makes sure the built-in images
// exist: busybox always (instant), base when asked (minutes, first run only).
func prepareImages(ctx context.Context, cfg Config, errOut io.Writer, log *slog.Logger) (*image.Store, error) {
	images, err := image.Open(filepath.Join(cfg.DataDir, "images"), log)
	if err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	if _, err := images.Get("busybox"); err != nil {
		if _, err := image.BuildBusybox(ctx, images, "busybox"); err != nil {
			log.Warn("busybox image not built", "err", err)
		}
	}
	if !cfg.BuildBase {
		return images, nil
	}
	if _, err := images.Get("base"); err == nil {
		return images, nil
	}
	fmt.Fprintln(errOut, "den: building the base image (Debian with bash, python3, nodejs, git, curl); first run only, a few minutes")
	p := newProgressPrinter(errOut)
	_, err = image.BuildBase(ctx, images, image.BaseOptions{}, p.print)
	p.done()
	if err != nil {
		return nil, fmt.Errorf("build base image: %w (retry with `den up`, or skip it with --no-base)", err)
	}
	return images, nil
}

// readEnvFile parses KEY=VALUE lines.
func readEnvFile(path string) map[string]string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "export "), "=")
		if ok {
			m[k] = strings.Trim(v, `"'`)
		}
	}
	return m
}

// openDrivers starts the drivers of cfg.Runtimes, in its order. On a
// full first start (cfg.BuildBase) it fetches the QEMU runtime's guest
// kernel when none is there; without one, QEMU creates fail saying how
// to fetch it.
func openDrivers(ctx context.Context, cfg Config, nets *sandboxnet.Manager, errOut io.Writer, log *slog.Logger) ([]driver.Driver, error) {
	var out []driver.Driver
	fail := func(err error) ([]driver.Driver, error) {
		for _, d := range out {
			d.Close()
		}
		return nil, err
	}
	for _, name := range cfg.Runtimes {
		switch name {
		case "gvisor":
			d, err := gvisor.New(gvisor.Config{
				RunscPath: cfg.RunscPath, GuestBinary: cfg.GuestBinary, Platform: cfg.Platform, HostSettings: cfg.HostSettings,
				StateDir: filepath.Join(cfg.DataDir, "sandboxes"), WarmPool: cfg.WarmPool, Networks: nets,
				WarmupScript: gvisor.DefaultWarmupScript, Logger: log,
			})
			if err != nil {
				return fail(fmt.Errorf("start gVisor driver: %w", err))
			}
			out = append(out, d)
		case "qemu":
			kernels, err := vmkernel.Open(filepath.Join(cfg.DataDir, "kernels"))
			if err != nil {
				return fail(fmt.Errorf("start QEMU driver: %w", err))
			}
			if _, err := kernels.Get(""); err != nil && cfg.BuildBase {
				fmt.Fprintln(errOut, "den: fetching the guest kernel of the qemu runtime (Debian's cloud kernel); first run only")
				if _, err := kernels.Fetch(ctx, "", errOut); err != nil {
					log.Warn("guest kernel not fetched: qemu sandboxes cannot start until `den kernel fetch` succeeds", "err", err)
				}
			}
			d, err := qemu.New(qemu.Config{StateDir: filepath.Join(cfg.DataDir, "vms"), Kernels: kernels, GuestBinary: cfg.GuestBinary, WarmPool: cfg.VMWarmPool, Networks: nets, Logger: log})
			if err != nil {
				return fail(fmt.Errorf("start QEMU driver: %w", err))
			}
			out = append(out, d)
		}
	}
	return out, nil
}

// openNetworks opens the sandbox network manager (<data>/net) and starts
// den's resolver. Without it (--no-network, or a host whose kernel lacks
// what it needs) sandboxes have loopback only: den says so and goes on.
func openNetworks(cfg Config, log *slog.Logger) *sandboxnet.Manager {
	if cfg.NoNetwork {
		log.Info("sandbox networking is off (--no-network): sandboxes have loopback only")
		return nil
	}
	var cidr netip.Prefix
	if cfg.SandboxCIDR != "" {
		cidr = netip.MustParsePrefix(cfg.SandboxCIDR) // checked by Validate
	}
	m, err := sandboxnet.Open(sandboxnet.Config{StateDir: filepath.Join(cfg.DataDir, "net"), CIDR: cidr, Logger: log})
	if err != nil {
		log.Warn("sandbox networking is off: sandboxes have loopback only", "err", err)
		return nil
	}
	if err := m.StartDNS(cfg.SandboxDNS); err != nil {
		log.Warn("sandbox networking is off: den's DNS resolver did not start; sandboxes have loopback only", "err", err)
		return nil
	}
	log.Info("sandbox networks ready", "cidr", m.CIDR(), "dns", m.DNS())
	return m
}
