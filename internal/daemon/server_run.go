package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/denhq/den/internal/carotate"
	"github.com/denhq/den/internal/cluster"
	"github.com/denhq/den/internal/clustermux"
	"github.com/denhq/den/internal/e2b"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/fleet"
	"github.com/denhq/den/internal/fsutil"
	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/nodelink"
	"github.com/denhq/den/internal/nodeproto"
	"github.com/denhq/den/internal/noderpc"
	"github.com/denhq/den/internal/pki"
	"github.com/denhq/den/internal/server"
	"github.com/denhq/den/internal/store"
)

// serverRun is what RunServer builds step by step; closers run in reverse
// on the way out.
type serverRun struct {
	cfg     ServerConfig
	log     *slog.Logger
	out     io.Writer
	ca      *pki.CA             // the CA this server started with
	also    []*x509.Certificate // CAs trusted beside it (a rotation under way)
	auth    *pki.Authority      // what it signs with and trusts now (see server_ca.go)
	cluster net.Listener
	adv     string
	certs   *pki.Holder // this server's certificate, renewed while it runs
	hosts   []string    // the hosts its certificate names
	st      *store.Store
	keys    apiKeys
	images  *image.Store
	fleet   *fleet.Fleet
	nodes   *cluster.Server
	srv     *server.Server
	traffic http.Handler // E2B sandbox traffic
	closers []func()
}

// RunServer runs `den server` until ctx is cancelled: the clustered store
// and the API, with no local sandbox node. out receives the eval-able
// DEN_URL=... and DEN_API_KEY=... lines once the server serves.
func RunServer(ctx context.Context, cfg ServerConfig, out io.Writer, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	r := &serverRun{cfg: cfg, log: log, out: out}
	defer r.close()
	startPprof(log)
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"create data dir", r.createDataDir},
		{"load the cluster CA", r.loadCA},
		{"listen on the cluster port", r.listenCluster},
		{"issue the server certificate", r.issueCert},
		{"open the clustered state", r.openStore},
		{"record the cluster CA", r.recordCA},
		{"ensure the admin keys", r.ensureKeys},
		{"open the image store", r.openImages},
		{"listen for agents", r.listenNodes},
		{"start the API server", r.newServer},
	}
	for _, step := range steps {
		if err := step.fn(ctx); err != nil {
			return fmt.Errorf("den server: %s: %w", step.name, err)
		}
	}
	return r.serve(ctx)
}

func (r *serverRun) close() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
}

func (r *serverRun) createDataDir(context.Context) error {
	return os.MkdirAll(r.cfg.DataDir, 0o700)
}

// loadCA reads the cluster CA, or creates it on the first server of a new
// cluster (no --join); a joining server must be given a copy.
func (r *serverRun) loadCA(context.Context) error {
	ca, err := pki.LoadCA(r.cfg.CADir)
	if err == nil {
		r.ca = ca
		r.also, err = pki.LoadTrusted(r.cfg.CADir)
		return err
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if r.cfg.Token != "" {
		return nil // issueCert gets the certificate with the token
	}
	if len(r.cfg.Join) > 0 {
		return errdefs.New(errdefs.FailedPrecondition,
			"no cluster CA in %s: copy the CA directory (%s and %s) of the first server there, point --ca-dir at it, or join with a server token (den token create --server, then --token)",
			r.cfg.CADir, pki.CACertFile, pki.CAKeyFile)
	}
	if ca, err = pki.NewCA("den cluster CA"); err != nil {
		return err
	}
	if err := ca.Save(r.cfg.CADir); err != nil {
		return fmt.Errorf("save the cluster CA to %s: %w", r.cfg.CADir, err)
	}
	r.log.Warn("created a new cluster CA: every other server needs a copy of this directory (--ca-dir)", "ca_dir", r.cfg.CADir)
	r.ca = ca
	return nil
}

func (r *serverRun) listenCluster(context.Context) error {
	ln, err := net.Listen("tcp", r.cfg.ClusterListen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (use --cluster-listen)", r.cfg.ClusterListen, err)
	}
	adv, err := r.cfg.advertise(ln.Addr())
	if err != nil {
		ln.Close()
		return err
	}
	r.cluster, r.adv = ln, adv
	r.closers = append(r.closers, func() {
		if r.cluster != nil { // not yet handed to the store
			r.cluster.Close()
		}
	})
	return nil
}

// issueCert signs this server's certificate for its advertised and bound
// addresses (a fresh one each start).
func (r *serverRun) issueCert(ctx context.Context) error {
	hosts := []string{}
	for _, a := range []string{r.adv, r.cluster.Addr().String()} {
		if h, _, err := net.SplitHostPort(a); err == nil {
			if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
				hosts = append(hosts, h)
			}
		}
	}
	r.hosts = hosts
	if r.ca == nil {
		if err := r.joinWithToken(ctx, hosts); err != nil {
			return err
		}
		r.auth = pki.NewAuthority(r.ca, r.also...)
		return nil
	}
	r.auth = pki.NewAuthority(r.ca, r.also...)
	cert, err := r.issue()
	if err != nil {
		return err
	}
	r.certs = pki.NewHolder(cert)
	return nil
}

// issue signs a fresh server certificate for this server's hosts.
func (r *serverRun) issue() (tls.Certificate, error) {
	leaf, err := r.auth.Signer().IssueServer(r.cfg.ID, r.hosts)
	if err != nil {
		return tls.Certificate{}, err
	}
	return leaf.TLS()
}

// certCheckInterval is how often a server checks whether its certificate
// needs renewing (pki.NeedsRenewal: a third of its month left).
const certCheckInterval = time.Hour

// renewCert keeps this server's certificate fresh until ctx ends: the
// cluster port and the node listener present the new one from their next
// handshake on. (Connections made before keep the certificate they were
// made with; raft and agents reconnect long before it expires.)
func (r *serverRun) renewCert(ctx context.Context, every time.Duration, needsRenewal func(*x509.Certificate, time.Time) bool) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		leaf, err := r.certs.Leaf()
		if err != nil || !needsRenewal(leaf, time.Now()) {
			continue
		}
		cert, err := r.issue()
		if err != nil {
			r.log.Error("renew this server's certificate", "error", err)
			continue
		}
		r.certs.Set(cert)
		r.log.Info("renewed this server's certificate", "expired", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
}

func (r *serverRun) openStore(ctx context.Context) error {
	r.log.Info("den server: opening the clustered state (waits for the cluster to form or a leader)", "server_id", r.cfg.ID, "advertise", r.adv,
		"bootstrap_expect", r.cfg.BootstrapExpect, "join", r.cfg.Join)
	ln := r.cluster
	r.cluster = nil // the store owns it now, open or not
	st, err := store.Open(ctx, store.Config{
		Dir: filepath.Join(r.cfg.DataDir, "state"), NodeID: r.cfg.ID, Logger: r.log,
		Cluster: &store.ClusterConfig{
			Listener: ln, Advertise: r.adv,
			ServerTLS: r.auth.ServerConfig(r.certs, pki.RoleServer), ClientTLS: r.auth.ClientConfig(r.certs),
			BootstrapExpect: r.cfg.BootstrapExpect, Join: r.cfg.Join,
		},
	})
	if err != nil {
		return err
	}
	r.st = st
	r.closers = append(r.closers, func() {
		if err := st.Close(); err != nil {
			r.log.Warn("close state", "error", err)
		}
	})
	return nil
}

// joinWithToken presents --token, with a request for a key made here, to
// the node listeners of --token-via in turn until one answers with a
// server certificate of the token's CA; r.ca becomes that CA's
// certificate (its key comes from the state, see recordCA).
func (r *serverRun) joinWithToken(ctx context.Context, hosts []string) error {
	tok, err := nodeproto.ParseToken(r.cfg.Token)
	if err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "--token")
	}
	csr, keyPEM, err := pki.NewCSR(r.cfg.ID)
	if err != nil {
		return err
	}
	req := nodeproto.JoinRequest{Token: r.cfg.Token, CSR: string(csr), Name: r.cfg.ID, Role: nodeproto.RoleServer, Hosts: hosts}
	var errs []error
	for attempt := 0; attempt < 10; attempt++ {
		for _, addr := range r.cfg.TokenVia {
			resp, err := tokenExchange(ctx, addr, tok, req)
			if err == nil {
				return r.useJoin(tok, resp, keyPEM)
			}
			if errdefs.Is(err, errdefs.PermissionDenied) || errdefs.Is(err, errdefs.InvalidArgument) {
				return fmt.Errorf("join with the token through %s: %w", addr, err)
			}
			r.log.Warn("join with the token failed; trying the next server", "via", addr, "error", err)
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return errdefs.Wrap(errdefs.Unavailable, errors.Join(errs...), "no server of --token-via admitted this server")
}

// useJoin keeps the certificate a token exchange answered with.
func (r *serverRun) useJoin(tok nodeproto.Token, resp nodeproto.JoinResponse, keyPEM []byte) error {
	ca, err := pki.ParseCACert([]byte(resp.CA)) // the first is the token's (nodeproto.Join)
	if err != nil {
		return errdefs.Wrap(errdefs.PermissionDenied, err, "the server's CA")
	}
	bundle, err := pki.ParseBundle([]byte(resp.CA))
	if err != nil {
		return errdefs.Wrap(errdefs.PermissionDenied, err, "the server's CAs")
	}
	r.also = bundle[1:]
	leaf, err := pki.NewLeaf([]byte(resp.Cert), keyPEM)
	if err != nil {
		return err
	}
	cert, err := leaf.TLS()
	if err != nil {
		return err
	}
	r.certs = pki.NewHolder(cert)
	r.ca = ca
	r.log.Info("admitted with the server token", "ca", ca.Hash())
	return nil
}

// tokenExchange makes one join exchange with the node listener at addr,
// whose certificate must be of the token's CA.
func tokenExchange(ctx context.Context, addr string, tok nodeproto.Token, req nodeproto.JoinRequest) (nodeproto.JoinResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d := tls.Dialer{Config: nodeproto.JoinTLSConfig(tok.CAHash)}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nodeproto.JoinResponse{}, errdefs.Wrap(errdefs.Unavailable, err, "dial %s", addr)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	return nodeproto.Join(c, req, tok.CAHash)
}

// ensureKeys makes the default tenant and this server's admin keys (each
// server keeps its own in its env file; all are in the shared state).
func (r *serverRun) ensureKeys(ctx context.Context) error {
	keys, err := ensureKeys(ctx, r.st, r.cfg.envFile())
	r.keys = keys
	return err
}

// openImages opens the image store the agents' nodes fetch images from,
// with the busybox image every den has.
func (r *serverRun) openImages(ctx context.Context) error {
	images, err := image.Open(filepath.Join(r.cfg.DataDir, "images"), r.log)
	if err != nil {
		return fmt.Errorf("open image store: %w", err)
	}
	if _, err := images.Get("busybox"); err != nil {
		if _, err := image.BuildBusybox(ctx, images, "busybox"); err != nil {
			r.log.Warn("busybox image not built", "err", err)
		}
	}
	r.images = images
	return nil
}

// listenNodes starts the node listener and the fleet behind it: the
// agents' nodes, their records and images over the links. Only the leader
// keeps agents (it places sandboxes); a follower sends them on.
func (r *serverRun) listenNodes(ctx context.Context) error {
	mux := nodelink.NewMux()
	noderpc.ServeRecords(mux, r.st)
	noderpc.ServeImages(mux, r.images)
	var nl *cluster.Server
	r.fleet = fleet.New(fleet.Config{Store: r.st, Logger: r.log,
		Sessions: func(id string) (*nodelink.Session, bool) { return nl.Session(id) }})
	r.fleet.ServeStarts(mux)
	nl, err := cluster.Listen(ctx, cluster.Config{
		Listen: r.cfg.NodeListen, ServerID: r.cfg.ID, CA: r.auth, Certs: r.certs, Store: r.st, Mux: mux,
		HeartbeatTTL: r.cfg.HeartbeatTTL, Logger: r.log,
		Accept: func() error {
			if _, _, self, _ := r.st.Leader(); !self {
				return errdefs.New(errdefs.Unavailable, "server %s does not lead the cluster: try the next server", r.cfg.ID)
			}
			return nil
		},
		OnConnect: func(id string, s *nodelink.Session) {
			if _, _, self, _ := r.st.Leader(); !self {
				r.log.Info("agent connected to a follower: sent on to the leader", "node", id)
				go s.Close()
				return
			}
			r.fleet.OnConnect(id, s)
		},
		OnDisconnect: r.fleet.OnDisconnect,
	})
	if err != nil {
		return fmt.Errorf("listen for agents on %s: %w (use --node-listen)", r.cfg.NodeListen, err)
	}
	r.nodes = nl
	r.closers = append(r.closers, func() { nl.Close() })
	return nil
}

// followLeadership closes the agents' sessions whenever this
// server stops leading, so that they reconnect to the new leader; when it
// gains the lead it takes over every node (cluster.Server.TakeOver), so
// that a node that does not come back is marked down.
func (r *serverRun) followLeadership(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	leading := false
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		_, _, self, _ := r.st.Leader()
		if self && !leading {
			if err := r.nodes.TakeOver(); err != nil {
				r.log.Error("take over the nodes", "error", err)
				continue // tried again at the next tick
			}
		}
		if leading = self; self {
			continue
		}
		for _, id := range r.nodes.Nodes() {
			if s, ok := r.nodes.Session(id); ok {
				r.log.Info("not the leader: agent sent on", "node", id)
				s.Close()
			}
		}
	}
}

func (r *serverRun) newServer(context.Context) error {
	srv, err := server.New(server.Config{Store: r.st, Node: r.fleet, Images: r.images, Cluster: r.nodes,
		Leading: r.leading, Version: r.cfg.Version, Logger: r.log})
	if err != nil {
		return err
	}
	// E2B's control plane on the API, and its sandbox traffic. Template
	// builds need a node's builder, which servers do not have: they
	// answer unsupported; templateID names a den image.
	srv.Mount(e2b.Routes, e2b.NewAPI(e2b.Config{Service: srv, Domain: r.cfg.Domain, Logger: r.log}))
	r.srv = srv
	r.traffic = e2b.NewSandboxTraffic(e2b.TrafficConfig{Service: srv, Domain: r.cfg.Domain})
	return srv.RegisterMetrics(r.fleet.Metrics(), carotate.Collector(r.st))
}

// serve listens on the API and sandbox-traffic addresses, publishes the
// env file and lines, and serves until ctx ends.
func (r *serverRun) serve(ctx context.Context) error {
	ln, err := net.Listen("tcp", r.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (use --listen 127.0.0.1:0)", r.cfg.Listen, err)
	}
	sbx, err := net.Listen("tcp", r.cfg.SandboxListen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("listen on %s: %w (use --sandbox-listen 127.0.0.1:0)", r.cfg.SandboxListen, err)
	}
	url, sbxURL := "http://"+ln.Addr().String(), "http://"+sbx.Addr().String()
	env := fmt.Sprintf("DEN_URL=%s\nDEN_API_KEY=%s\nE2B_API_URL=%s\nE2B_SANDBOX_URL=%s\nE2B_API_KEY=%s\nDEN_NODE_ADDR=%s\n",
		url, r.keys.den, url, sbxURL, r.keys.e2b, r.nodes.Addr())
	if err := fsutil.WriteFileAtomic(r.cfg.envFile(), []byte(env), 0o600); err != nil {
		ln.Close()
		sbx.Close()
		return err
	}
	fmt.Fprint(r.out, env)
	r.log.Info("den server is up", "url", url, "sandbox_url", sbxURL, "server_id", r.cfg.ID, "cluster_addr", r.adv, "data_dir", r.cfg.DataDir)

	// The API and E2B sandbox traffic are answered here on the leader; a
	// follower passes them to the leader's, which serves them on the
	// cluster port too.
	own := map[string]bool{"/health": true, "/metrics": true, "/v1/cluster/members": true}
	servers := []struct {
		hs *httpServer
		ln net.Listener
	}{
		{newHTTPServer(r.front(clustermux.ProtoAPI, r.srv.Handler(), own), defaultHTTPLimits), ln},
		{newHTTPServer(r.front(clustermux.ProtoSandbox, r.traffic, nil), defaultHTTPLimits), sbx},
		{newHTTPServer(onlyWhileLeading(r.srv.Handler(), r.leading), defaultHTTPLimits), r.st.ClusterListener(clustermux.ProtoAPI)},
		{newHTTPServer(onlyWhileLeading(r.traffic, r.leading), defaultHTTPLimits), r.st.ClusterListener(clustermux.ProtoSandbox)},
	}
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{}, 6)
	go func() { defer func() { done <- struct{}{} }(); r.srv.Run(bg) }()
	go func() { defer func() { done <- struct{}{} }(); r.fleet.Run(bg) }()
	go func() { defer func() { done <- struct{}{} }(); r.followLeadership(bg) }()
	go func() { defer func() { done <- struct{}{} }(); r.renewCert(bg, certCheckInterval, pki.NeedsRenewal) }()
	go func() { defer func() { done <- struct{}{} }(); r.followCA(bg, time.Second) }()
	go func() { defer func() { done <- struct{}{} }(); r.rotator().Run(bg) }()
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errc <- s.hs.Serve(s.ln) }()
	}
	select {
	case err = <-errc:
	case <-ctx.Done():
		r.log.Info("shutting down")
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	for i, s := range servers {
		if serr := s.hs.Shutdown(shutCtx); err == nil && i < 2 {
			err = serr
		}
	}
	cancel()
	stopBG()
	for range 6 {
		<-done
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// leading reports whether this server leads the cluster.
func (r *serverRun) leading() bool {
	_, _, self, _ := r.st.Leader()
	return self
}

// front is a listener's handler: local on the leader (and for own paths),
// else the request passed to the leader's handler of proto over the
// cluster port (mutual TLS).
func (r *serverRun) front(proto byte, local http.Handler, own map[string]bool) *leaderProxy {
	clientTLS := r.auth.ClientConfig(r.certs)
	return &leaderProxy{
		leader: func() (string, bool, bool) {
			_, addr, self, ok := r.st.Leader()
			return addr, self, ok
		},
		dial: func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := clustermux.Dial(ctx, addr, proto, clientTLS)
			if err != nil {
				return nil, err
			}
			// A kept connection to a server that vanished without a word
			// fails within this, not TCP's 15 minutes.
			setUserTimeout(c.NetConn(), 15*time.Second)
			return c, nil
		},
		local: local,
		own:   own,
	}
}
