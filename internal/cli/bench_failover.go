package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/localcluster"
	den "github.com/denhq/den/sdk/go"
)

// failoverConfig is the configuration of `den bench failover`.
type failoverConfig struct {
	servers, trials, writers int
	// simNodes > 0 makes every write a sandbox create (runtime sim) on
	// that many simulated nodes of one den agent: the first write a new
	// leader commits is then its first placement.
	simNodes      int
	dir, jsonFile string
	keep          bool
}

// failoverReport is the JSON report of `den bench failover`.
type failoverReport struct {
	Date    time.Time `json:"date"`
	Host    string    `json:"host"`
	CPUs    int       `json:"cpus"`
	Servers int       `json:"servers"`
	Writers int       `json:"writers"`
	// Kind is what a write is: "api_key", or "sandbox" (a placement on
	// SimNodes simulated nodes).
	Kind     string `json:"kind"`
	SimNodes int    `json:"sim_nodes,omitempty"`
	// OvercommittedNodes are nodes holding more CPU or memory than they
	// have, after the run (placements only; must be 0).
	OvercommittedNodes int `json:"overcommitted_nodes"`
	// TrialsMs: per trial, milliseconds from SIGKILL of the leader to
	// the first acknowledged write that was sent after the leader had
	// exited (so a new leader committed it).
	TrialsMs []float64 `json:"trials_ms"`
	P50Ms    float64   `json:"p50_ms"`
	MaxMs    float64   `json:"max_ms"`
	// Writes: acknowledged, failed (not acknowledged: they may or may
	// not have been applied), and the checks after the run.
	Acked  int `json:"acked"`
	Failed int `json:"failed"`
	// Missing are acknowledged writes absent afterwards; Duplicated are
	// writes present more than once. Both must be 0.
	Missing    int `json:"missing"`
	Duplicated int `json:"duplicated"`
	// FailedPresent are failed writes that were applied all the same
	// (ambiguous failures; allowed).
	FailedPresent int `json:"failed_present"`
	// WriteP50Ms and WriteP99Ms are the latencies of the acknowledged
	// writes, over all servers and the whole run.
	WriteP50Ms float64 `json:"write_p50_ms"`
	WriteP99Ms float64 `json:"write_p99_ms"`
	// Flaps counts trials whose new leader lost leadership while the
	// killed server restarted and rejoined (no kill in that window).
	Flaps int `json:"flaps"`
}

func (a *app) benchFailoverCmd() *cobra.Command {
	cfg := failoverConfig{servers: 3, trials: 20, writers: 2}
	cmd := &cobra.Command{
		Use:   "failover",
		Short: "Measure leader failover of a local den server cluster: kill -9 the leader, time the first write on a new one",
		Long: `Starts --servers den server processes on loopback (this den binary), keeps
--writers clients writing (each write creates an API key with a unique name,
round-robin over the running servers; with --sim-nodes N each write is a
sandbox create placed on one of N simulated nodes of a den agent, so the first
write of a new leader is its first placement), and runs --trials times: kill -9 the
leader, measure the time from the kill to the first acknowledged write that
was sent after the leader had exited (a new leader committed it), restart the
killed server and wait until it serves again. At the end it checks that every
acknowledged write is present exactly once and that no write is present twice
(with --sim-nodes, also that no node holds more than its capacity).`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.servers != 3 && cfg.servers != 5 {
				return usagef(cmd, "--servers must be 3 or 5")
			}
			if cfg.trials < 1 || cfg.writers < 1 {
				return usagef(cmd, "--trials and --writers must be at least 1")
			}
			return benchFailover(cmd, cfg)
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.servers, "servers", cfg.servers, "cluster size: 3 or 5")
	f.IntVar(&cfg.trials, "trials", cfg.trials, "leader kills")
	f.IntVar(&cfg.writers, "writers", cfg.writers, "concurrent writing clients")
	f.IntVar(&cfg.simNodes, "sim-nodes", 0, "make each write a sandbox create placed on one of this many simulated nodes (a den agent --sim)")
	f.StringVar(&cfg.dir, "dir", "", "directory of the servers' data and logs (default: a new temporary one)")
	f.BoolVar(&cfg.keep, "keep", false, "keep the directory afterwards")
	f.StringVar(&cfg.jsonFile, "json", "", "write the JSON report to this file (- for stdout)")
	return cmd
}

// failoverWrite is one write attempt.
type failoverWrite struct {
	name       string
	start, end time.Time
	ok         bool
}

// failoverLoad is the writing clients.
type failoverLoad struct {
	c      *localcluster.Cluster
	write  func(ctx context.Context, cl *den.Client, name string) error
	seq    atomic.Int64
	mu     sync.Mutex
	writes []failoverWrite
	// lastErr is the last failed write's error, for a run that fails.
	lastErr error
}

// writeKey creates an API key named name.
func writeKey(ctx context.Context, cl *den.Client, name string) error {
	_, err := cl.CreateAPIKey(ctx, rest.CreateAPIKeyRequest{Tenant: failoverTenant, Name: name})
	return err
}

// writeSandbox creates a small simulated sandbox tagged with name.
func writeSandbox(ctx context.Context, cl *den.Client, name string) error {
	timeout := int64(0)
	_, err := cl.Create(ctx, rest.CreateSandboxRequest{Image: "busybox", Runtime: "sim", CPUs: 0.1, MemoryMB: 64, DiskMB: 16,
		Timeout: &timeout, Metadata: map[string]string{failoverTag: name}})
	return err
}

// failoverTag is the metadata key of the sandboxes the bench creates.
const failoverTag = "den-bench-failover"

func (l *failoverLoad) run(ctx context.Context, writer int) {
	for i := writer; ctx.Err() == nil; i++ {
		s := l.c.Servers[i%len(l.c.Servers)]
		if !s.Running() || s.URL == "" {
			continue
		}
		cl, err := den.NewClient(den.Options{URL: s.URL, APIKey: s.APIKey})
		if err != nil {
			continue
		}
		name := fmt.Sprintf("w%d", l.seq.Add(1))
		w := failoverWrite{name: name, start: time.Now()}
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err = l.write(wctx, cl, name)
		cancel()
		w.end, w.ok = time.Now(), err == nil
		if ctx.Err() != nil && !w.ok {
			return // cut off by the end of the run: not a failure
		}
		l.mu.Lock()
		l.writes = append(l.writes, w)
		if !w.ok {
			l.lastErr = err
		}
		l.mu.Unlock()
		if !w.ok {
			time.Sleep(5 * time.Millisecond) // no busy loop on a dead server
		}
	}
}

// lastError is the last failed write's error, or nil.
func (l *failoverLoad) lastError() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr
}

// firstAckAfter is the end of the first acknowledged write sent after t.
func (l *failoverLoad) firstAckAfter(t time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for _, w := range l.writes {
		if w.ok && w.start.After(t) && (first.IsZero() || w.end.Before(first)) {
			first = w.end
		}
	}
	return first, !first.IsZero()
}

const failoverTenant = "bench-failover"

func benchFailover(cmd *cobra.Command, cfg failoverConfig) error {
	ctx := cmd.Context()
	errOut := cmd.ErrOrStderr()
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	if cfg.dir == "" {
		if cfg.dir, err = os.MkdirTemp("", "den-bench-failover-"); err != nil {
			return err
		}
	}
	if !cfg.keep {
		defer os.RemoveAll(cfg.dir)
	}
	fmt.Fprintf(errOut, "failover bench: starting %d servers in %s\n", cfg.servers, cfg.dir)
	c, err := localcluster.Start(ctx, localcluster.Config{Bin: bin, Dir: cfg.dir, Servers: cfg.servers})
	if err != nil {
		return fmt.Errorf("start the cluster: %w", err)
	}
	defer c.Close()
	cl, err := c.Servers[0].Client()
	if err != nil {
		return err
	}
	if _, err := cl.CreateTenant(ctx, rest.CreateTenantRequest{Name: failoverTenant}); err != nil {
		return err
	}
	host, _ := os.Hostname()
	rep := failoverReport{Date: time.Now().UTC(), Host: host, CPUs: runtime.NumCPU(), Servers: cfg.servers, Writers: cfg.writers,
		Kind: "api_key", SimNodes: cfg.simNodes}
	load := &failoverLoad{c: c, write: writeKey}
	if cfg.simNodes > 0 {
		stop, err := startSimAgent(ctx, c, cl, bin, cfg, errOut)
		if err != nil {
			return err
		}
		defer stop()
		rep.Kind, load.write = "sandbox", writeSandbox
	}
	lctx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range cfg.writers {
		wg.Add(1)
		go func() { defer wg.Done(); load.run(lctx, w) }()
	}
	for trial := 1; trial <= cfg.trials; trial++ {
		d, flapped, err := failoverTrial(ctx, c, load)
		if err != nil {
			stopLoad()
			wg.Wait()
			return fmt.Errorf("trial %d: %w (logs in %s; --keep keeps them)", trial, err, cfg.dir)
		}
		rep.TrialsMs = append(rep.TrialsMs, float64(d.Microseconds())/1000)
		if flapped {
			rep.Flaps++
		}
		fmt.Fprintf(errOut, "trial %d: first %s on the new leader %.0f ms after kill -9\n", trial, map[string]string{"api_key": "write", "sandbox": "placement"}[rep.Kind], rep.TrialsMs[len(rep.TrialsMs)-1])
	}
	stopLoad()
	wg.Wait()
	check := checkFailoverWrites
	if cfg.simNodes > 0 {
		check = checkFailoverSandboxes
	}
	if err := check(ctx, c, load, &rep); err != nil {
		return err
	}
	sorted := slices.Clone(rep.TrialsMs)
	slices.Sort(sorted)
	rep.P50Ms, rep.MaxMs = sorted[(len(sorted)-1)/2], sorted[len(sorted)-1]
	out := cmd.OutOrStdout()
	if cfg.jsonFile == "-" {
		out = errOut
	}
	printFailoverReport(out, rep)
	if err := writeJSONReport(cmd, cfg.jsonFile, rep); err != nil {
		return err
	}
	if rep.Missing > 0 || rep.Duplicated > 0 || rep.OvercommittedNodes > 0 {
		return &ExitError{Code: 1, Message: fmt.Sprintf("failover bench: %d acknowledged writes missing, %d duplicated, %d nodes over-committed",
			rep.Missing, rep.Duplicated, rep.OvercommittedNodes)}
	}
	return nil
}

// failoverTrial waits for writes to flow, kills the leader, times the
// first write a new leader commits, and restarts the killed server. It
// reports whether the new leader changed while the killed one rejoined.
func failoverTrial(ctx context.Context, c *localcluster.Cluster, load *failoverLoad) (time.Duration, bool, error) {
	leader, err := waitLeader(ctx, c)
	if err != nil {
		return 0, false, err
	}
	if _, ok := waitFor(ctx, 30*time.Second, func() (time.Time, bool) { return load.firstAckAfter(time.Now().Add(-time.Second)) }); !ok {
		return 0, false, fmt.Errorf("no write succeeded before the kill (the last failed with: %v)", load.lastError())
	}
	killed := time.Now()
	c.Kill(leader) // SIGKILL, then waits until it has exited
	exited := time.Now()
	first, ok := waitFor(ctx, 60*time.Second, func() (time.Time, bool) { return load.firstAckAfter(exited) })
	if !ok {
		return 0, false, fmt.Errorf("no write succeeded within 60 s of kill -9 of leader %s", leader.ID)
	}
	newLeader, err := waitLeader(ctx, c)
	if err != nil {
		return 0, false, err
	}
	if err := c.Restart(ctx, leader); err != nil {
		return 0, false, fmt.Errorf("restart %s: %w", leader.ID, err)
	}
	after, err := waitLeader(ctx, c)
	if err != nil {
		return 0, false, err
	}
	return first.Sub(killed), after != newLeader, nil
}

func waitLeader(ctx context.Context, c *localcluster.Cluster) (*localcluster.Server, error) {
	var last error
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		l, err := c.Leader(ctx)
		if err == nil {
			return l, nil
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("no leader all servers agree on within 30 s: %w", last)
}

// leaderClient is a client of the cluster's leader, which has applied
// every acknowledged write.
func leaderClient(ctx context.Context, c *localcluster.Cluster) (*den.Client, error) {
	leader, err := waitLeader(ctx, c)
	if err != nil {
		return nil, err
	}
	return leader.Client()
}

// waitFor polls f every 2 ms until it answers true or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, f func() (time.Time, bool)) (time.Time, bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if t, ok := f(); ok {
			return t, true
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Time{}, false
}

// checkFailoverWrites lists the keys through the leader (which has applied
// every acknowledged write) and checks every acknowledged write is there
// once and no write is there twice.
func checkFailoverWrites(ctx context.Context, c *localcluster.Cluster, load *failoverLoad, rep *failoverReport) error {
	cl, err := leaderClient(ctx, c)
	if err != nil {
		return err
	}
	keys, err := cl.ListAPIKeys(ctx, failoverTenant)
	if err != nil {
		return fmt.Errorf("list the written keys: %w", err)
	}
	count := map[string]int{}
	for _, k := range keys {
		count[k.Name]++
	}
	fillWriteStats(load, rep, count)
	return nil
}

// fillWriteStats fills rep's write counts and latencies from the writes
// and how many times each name is present (count).
func fillWriteStats(load *failoverLoad, rep *failoverReport, count map[string]int) {
	var lat []float64
	for _, w := range load.writes {
		if w.ok {
			lat = append(lat, float64(w.end.Sub(w.start).Microseconds())/1000)
		}
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		rep.WriteP50Ms, rep.WriteP99Ms = lat[(len(lat)-1)/2], lat[(len(lat)-1)*99/100]
	}
	for _, n := range count {
		if n > 1 {
			rep.Duplicated++
		}
	}
	for _, w := range load.writes {
		switch {
		case w.ok:
			rep.Acked++
			if count[w.name] == 0 {
				rep.Missing++
			}
		default:
			rep.Failed++
			if count[w.name] > 0 {
				rep.FailedPresent++
			}
		}
	}
}

func printFailoverReport(w io.Writer, rep failoverReport) {
	fmt.Fprintf(w, "%d servers on loopback, %d writers, %d CPUs (%s)\n", rep.Servers, rep.Writers, rep.CPUs, rep.Host)
	what := "write (an API key)"
	if rep.Kind == "sandbox" {
		what = fmt.Sprintf("placement (a sandbox create on %d simulated nodes)", rep.SimNodes)
	}
	fmt.Fprintf(w, "kill -9 of the leader to the first %s committed by a new leader, %d trials:\n", what, len(rep.TrialsMs))
	fmt.Fprintf(w, "  p50 %.0f ms, max %.0f ms\n", rep.P50Ms, rep.MaxMs)
	fmt.Fprintf(w, "writes: %d acknowledged, %d failed (%d of them applied all the same)\n", rep.Acked, rep.Failed, rep.FailedPresent)
	fmt.Fprintf(w, "write latency: p50 %.1f ms, p99 %.1f ms\n", rep.WriteP50Ms, rep.WriteP99Ms)
	fmt.Fprintf(w, "leader changes while the killed server rejoined (flaps): %d\n", rep.Flaps)
	fmt.Fprintf(w, "check: %d acknowledged writes missing, %d duplicated\n", rep.Missing, rep.Duplicated)
	if rep.Kind == "sandbox" {
		fmt.Fprintf(w, "check: %d nodes over-committed\n", rep.OvercommittedNodes)
	}
}

// startSimAgent starts a den agent with cfg.simNodes simulated nodes (room
// for many small sandboxes) and waits until all are ready.
func startSimAgent(ctx context.Context, c *localcluster.Cluster, cl *den.Client, bin string, cfg failoverConfig, errOut io.Writer) (stop func(), err error) {
	tok, err := cl.CreateJoinToken(ctx, rest.CreateJoinTokenRequest{Uses: cfg.simNodes})
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(cfg.dir, "agent.log"))
	if err != nil {
		return nil, err
	}
	var addrs []string
	for _, s := range c.Servers {
		addrs = append(addrs, s.NodeAddr)
	}
	cmd := exec.Command(bin, "agent", "--server", strings.Join(addrs, ","), "--token", tok.Token,
		"--sim", strconv.Itoa(cfg.simNodes), "--sim-cpus", "400", "--sim-memory-mb", "500000",
		"--data-dir", filepath.Join(cfg.dir, "agent"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	stop = func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	}
	fmt.Fprintf(errOut, "failover bench: %d simulated nodes joining\n", cfg.simNodes)
	if _, ok := waitFor(ctx, 60*time.Second, func() (time.Time, bool) {
		nodes, err := cl.ListNodes(ctx)
		ready := 0
		for _, n := range nodes {
			if n.State == rest.NodeReady {
				ready++
			}
		}
		return time.Now(), err == nil && ready == cfg.simNodes
	}); !ok {
		stop()
		return nil, fmt.Errorf("the %d simulated nodes were not ready within 60 s (see %s)", cfg.simNodes, logf.Name())
	}
	return stop, nil
}

// checkFailoverSandboxes lists the bench's sandboxes through the leader
// and checks every acknowledged create is there once, none twice, and no
// node holds more CPU or memory than it has.
func checkFailoverSandboxes(ctx context.Context, c *localcluster.Cluster, load *failoverLoad, rep *failoverReport) error {
	cl, err := leaderClient(ctx, c)
	if err != nil {
		return err
	}
	count := map[string]int{}
	type use struct {
		cpus float64
		mem  int64
	}
	used := map[string]use{}
	for sb, err := range cl.All(ctx, den.ListOptions{Limit: 1000}) {
		if err != nil {
			return fmt.Errorf("list the created sandboxes: %w", err)
		}
		if name, ok := sb.Metadata[failoverTag]; ok {
			count[name]++
		}
		if sb.State != rest.StateRunning && sb.State != rest.StateStarting {
			continue
		}
		u := used[sb.Node]
		u.cpus += sb.CPUs
		u.mem += sb.MemoryMB
		used[sb.Node] = u
	}
	nodes, err := cl.ListNodes(ctx)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		u := used[n.ID]
		if n.Cluster != nil && (u.cpus > n.Cluster.CPUs+1e-6 || u.mem > n.MemoryMB) {
			rep.OvercommittedNodes++
		}
	}
	fillWriteStats(load, rep, count)
	return nil
}
