// Package localcluster runs a cluster of `den server` processes on this
// host's loopback: what the cluster's end-to-end test and `den bench
// failover` drive. It starts, kills (SIGKILL) and restarts servers and
// finds the leader through the API; it knows nothing of raft itself.
package localcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	den "github.com/denhq/den/sdk/go"
)

// Config says what cluster to run.
type Config struct {
	// Bin is the den binary.
	Bin string
	// Dir holds each server's data dir (s1, s2, ...), the shared CA
	// directory and the servers' logs (s1.log, ...).
	Dir string
	// Servers is the cluster size: 1, 3 or 5.
	Servers int
	// StartTimeout bounds each server's start; 0 means a minute.
	StartTimeout time.Duration
	// ExtraArgs are added to every `den server` command line.
	ExtraArgs []string
}

// Server is one `den server` process.
type Server struct {
	ID          string
	ClusterAddr string // 127.0.0.1:port of its cluster port
	NodeAddr    string // 127.0.0.1:port agents dial
	URL, APIKey string // its API and admin key (as it printed them)
	// SandboxURL and E2BKey are its E2B_SANDBOX_URL and E2B_API_KEY
	// (E2B_API_URL is URL).
	SandboxURL, E2BKey string
	DataDir            string
	LogPath            string

	cmd   *exec.Cmd
	done  chan struct{} // closed when the process has exited
	lines chan string   // its stdout lines
}

// Running reports whether the process is up.
func (s *Server) Running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Client is an SDK client of the server with its admin key.
func (s *Server) Client() (*den.Client, error) {
	return den.NewClient(den.Options{URL: s.URL, APIKey: s.APIKey})
}

// Cluster is a running set of servers.
type Cluster struct {
	cfg     Config
	Servers []*Server
	mu      sync.Mutex
}

// Start starts cfg.Servers servers with --bootstrap-expect cfg.Servers: the
// first without --join (it creates the CA), then the others joining the
// ones before them, and waits for all to serve. On error it stops what it
// started.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = time.Minute
	}
	c := &Cluster{cfg: cfg}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	ports, err := freePorts(2 * cfg.Servers)
	if err != nil {
		return nil, err
	}
	for i := range cfg.Servers {
		id := fmt.Sprintf("s%d", i+1)
		c.Servers = append(c.Servers, &Server{
			ID: id, ClusterAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i])),
			NodeAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[cfg.Servers+i])),
			DataDir:  filepath.Join(cfg.Dir, id), LogPath: filepath.Join(cfg.Dir, id+".log"),
		})
	}
	type started struct {
		i   int
		err error
	}
	res := make(chan started, cfg.Servers)
	// The first creates the CA; the others need it, and join the ones
	// before them. They all wait in Start for the cluster to form.
	if err := c.launch(c.Servers[0], nil); err != nil {
		return nil, err
	}
	go func() { res <- started{0, c.waitServing(ctx, c.Servers[0])} }()
	if err := waitFile(ctx, filepath.Join(cfg.Dir, "ca", "ca.pem"), cfg.StartTimeout); err != nil {
		c.Close()
		return nil, err
	}
	for i, s := range c.Servers[1:] {
		var join []string
		for _, o := range c.Servers[:i+1] {
			join = append(join, o.ClusterAddr)
		}
		if err := c.launch(s, join); err != nil {
			c.Close()
			return nil, err
		}
		go func() { res <- started{i + 1, c.waitServing(ctx, s)} }()
	}
	var errs []error
	for range cfg.Servers {
		r := <-res
		if r.err != nil {
			errs = append(errs, fmt.Errorf("server %s: %w", c.Servers[r.i].ID, r.err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// launch starts s's process. join is nil for the first server.
func (c *Cluster) launch(s *Server, join []string) error {
	args := []string{"server", "--id", s.ID, "--data-dir", s.DataDir, "--listen", "127.0.0.1:0",
		"--cluster-listen", s.ClusterAddr, "--node-listen", s.NodeAddr, "--ca-dir", filepath.Join(c.cfg.Dir, "ca"),
		"--bootstrap-expect", strconv.Itoa(c.cfg.Servers)}
	if len(join) > 0 {
		args = append(args, "--join", strings.Join(join, ","))
	}
	return c.start(s, args)
}

// AddServer starts one more server that joins the cluster with a server
// join token (den token create --server) and a CA directory of its own,
// empty: it gets its certificate with the token and the CA from the
// replicated state. It returns once the server serves.
func (c *Cluster) AddServer(ctx context.Context, token string) (*Server, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	id := fmt.Sprintf("s%d", len(c.Servers)+1)
	s := &Server{
		ID: id, ClusterAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		NodeAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])),
		DataDir:  filepath.Join(c.cfg.Dir, id), LogPath: filepath.Join(c.cfg.Dir, id+".log"),
	}
	var join, via []string
	for _, o := range c.Servers {
		join, via = append(join, o.ClusterAddr), append(via, o.NodeAddr)
	}
	args := []string{"server", "--id", s.ID, "--data-dir", s.DataDir, "--listen", "127.0.0.1:0",
		"--cluster-listen", s.ClusterAddr, "--node-listen", s.NodeAddr,
		"--join", strings.Join(join, ","), "--token", token, "--token-via", strings.Join(via, ",")}
	if err := c.start(s, args); err != nil {
		return nil, err
	}
	c.Servers = append(c.Servers, s)
	if err := c.waitServing(ctx, s); err != nil {
		return nil, fmt.Errorf("server %s: %w", s.ID, err)
	}
	return s, nil
}

// start runs `den args...` (and the extra arguments) as s's process.
func (c *Cluster) start(s *Server, args []string) error {
	args = append(args, c.cfg.ExtraArgs...)
	logf, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.cfg.Bin, args...)
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", s.ID, err)
	}
	s.cmd, s.done, s.URL, s.APIKey = cmd, make(chan struct{}), "", ""
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, out)
	}()
	go func() {
		cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	s.lines = lines
	return nil
}

// waitServing reads s's DEN_URL, DEN_API_KEY, E2B_SANDBOX_URL and
// E2B_API_KEY lines (printed once it serves), within StartTimeout.
func (c *Cluster) waitServing(ctx context.Context, s *Server) error {
	timer := time.NewTimer(c.cfg.StartTimeout)
	defer timer.Stop()
	var url, key, sbx, e2bKey string
	for url == "" || key == "" || sbx == "" || e2bKey == "" {
		select {
		case l, ok := <-s.lines:
			if !ok {
				return fmt.Errorf("den server exited before it served (see %s)", s.LogPath)
			}
			if v, ok := strings.CutPrefix(l, "DEN_URL="); ok {
				url = v
			}
			if v, ok := strings.CutPrefix(l, "DEN_API_KEY="); ok {
				key = v
			}
			if v, ok := strings.CutPrefix(l, "E2B_SANDBOX_URL="); ok {
				sbx = v
			}
			if v, ok := strings.CutPrefix(l, "E2B_API_KEY="); ok {
				e2bKey = v
			}
		case <-timer.C:
			return fmt.Errorf("den server did not serve within %s (see %s)", c.cfg.StartTimeout, s.LogPath)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c.mu.Lock()
	s.URL, s.APIKey, s.SandboxURL, s.E2BKey = url, key, sbx, e2bKey
	c.mu.Unlock()
	return nil
}

// NodeAddrs are the servers' node addresses, for den agent --server.
func (c *Cluster) NodeAddrs() []string {
	var out []string
	for _, s := range c.Servers {
		out = append(out, s.NodeAddr)
	}
	return out
}

// Kill kills s with SIGKILL and waits for it to exit.
func (c *Cluster) Kill(s *Server) {
	if !s.Running() {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Restart starts a stopped server again on its data dir and waits for it
// to serve (after it has caught up with the leader).
func (c *Cluster) Restart(ctx context.Context, s *Server) error {
	if s.Running() {
		return errdefs.New(errdefs.FailedPrecondition, "server %s is running", s.ID)
	}
	var join []string
	for _, o := range c.Servers {
		if o != s {
			join = append(join, o.ClusterAddr)
		}
	}
	if err := c.launch(s, join); err != nil {
		return err
	}
	return c.waitServing(ctx, s)
}

// Leader asks the running servers for the cluster's members and returns
// the leader all of the answering ones agree on, or NotFound.
func (c *Cluster) Leader(ctx context.Context) (*Server, error) {
	var leader string
	for _, s := range c.Servers {
		if !s.Running() {
			continue
		}
		cl, err := s.Client()
		if err != nil {
			return nil, err
		}
		list, err := cl.ClusterMembers(ctx)
		if err != nil {
			return nil, err
		}
		l := leaderID(list.Members)
		if l == "" || (leader != "" && l != leader) {
			return nil, errdefs.New(errdefs.NotFound, "servers do not agree on a leader yet")
		}
		leader = l
	}
	for _, s := range c.Servers {
		if s.ID == leader && s.Running() {
			return s, nil
		}
	}
	return nil, errdefs.New(errdefs.NotFound, "no running leader")
}

func leaderID(ms []rest.ClusterMember) string {
	for _, m := range ms {
		if m.Role == rest.MemberLeader {
			return m.ID
		}
	}
	return ""
}

// Close kills every server.
func (c *Cluster) Close() {
	for _, s := range c.Servers {
		c.Kill(s)
	}
}

// freePorts picks n free loopback ports (closed again: a race with other
// processes is possible but unlikely).
func freePorts(n int) ([]int, error) {
	var out []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// waitFile polls until path exists.
func waitFile(ctx context.Context, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %s", path, timeout)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
