package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	den "github.com/denhq/den/sdk/go"
)

// clusterBenchConfig is the configuration of `den bench cluster`.
type clusterBenchConfig struct {
	sandboxes   int
	concurrency int
	runtime     string
	cpus        float64
	memoryMB    int64
	diskMB      int64
	jsonFile    string
	cpuProfile  string
	tenant      string
}

// clusterReport is the JSON report of `den bench cluster`.
type clusterReport struct {
	Date        time.Time  `json:"date"`
	Server      string     `json:"server"`
	Host        string     `json:"host"`
	CPUs        int        `json:"cpus"`
	Runtime     string     `json:"runtime"`
	Nodes       int        `json:"nodes"`
	Sandboxes   int        `json:"sandboxes"`
	Concurrency int        `json:"concurrency"`
	Create      phaseStats `json:"create"`
	Exec        phaseStats `json:"exec"`
	Delete      phaseStats `json:"delete"`
	// TotalMs is the three phases' wall time together.
	TotalMs float64 `json:"total_ms"`
	// DedicatedNodes counts the nodes of pools another tenant owns, and
	// OnOthersNodes the sandboxes created that were placed on one of
	// them (checked after the create phase; must be 0).
	DedicatedNodes int `json:"dedicated_nodes"`
	OnOthersNodes  int `json:"on_others_nodes"`
}

// benchTimeout outlives a run: the reaper must not race the phases.
var benchTimeout int64 = 3600

// benchImage is the tiny image the benchmark's sandboxes name (the
// simulator reads no image, but the API checks that it exists).
const benchImage = "den-bench-sim:1"

func (a *app) benchClusterCmd() *cobra.Command {
	var cfg clusterBenchConfig
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Create N sandboxes, run a command in each and delete them all, through the API of a cluster",
		Long: "Drives a running cluster (den server with agents, typically `den agent --sim N`) end to\n" +
			"end through the /v1 API: creates --sandboxes sandboxes of --runtime, runs `echo ok` in\n" +
			"each, then deletes them, --concurrency requests at a time. Prints the wall time of each\n" +
			"phase and the API latency percentiles; every operation must succeed.",
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.sandboxes < 1 || cfg.concurrency < 1 {
				return usagef(cmd, "--sandboxes and --concurrency must be >= 1")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			return a.benchCluster(cmd, c, cfg)
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.sandboxes, "sandboxes", 100000, "sandboxes to create, exec in and delete")
	f.IntVar(&cfg.concurrency, "concurrency", 512, "requests in flight at once")
	f.StringVar(&cfg.runtime, "runtime", "sim", "runtime of the sandboxes")
	f.Float64Var(&cfg.cpus, "cpus", 0.1, "CPUs of each sandbox")
	f.Int64Var(&cfg.memoryMB, "memory-mb", 128, "memory of each sandbox")
	f.Int64Var(&cfg.diskMB, "disk-mb", 256, "disk of each sandbox")
	f.StringVar(&cfg.jsonFile, "json", "", "write the JSON report to this file (- for stdout)")
	f.StringVar(&cfg.cpuProfile, "cpu-profile", "", "write a CPU profile of this client's run to this file (go tool pprof)")
	f.StringVar(&cfg.tenant, "tenant", "default", "the tenant of the API key (the check: no sandbox of it on another tenant's dedicated nodes)")
	return cmd
}

func (a *app) benchCluster(cmd *cobra.Command, c *den.Client, cfg clusterBenchConfig) error {
	ctx := cmd.Context()
	if err := ensureBenchImage(ctx, c); err != nil {
		return err
	}
	nodes, err := c.ListNodes(ctx)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	rep := clusterReport{Date: time.Now().UTC(), Server: c.URL(), Host: host, CPUs: runtime.NumCPU(), Runtime: cfg.runtime,
		Nodes: len(nodes), Sandboxes: cfg.sandboxes, Concurrency: cfg.concurrency}
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpu-profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpu-profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	ids, placed := make([]string, cfg.sandboxes), make([]string, cfg.sandboxes)
	fmt.Fprintf(cmd.ErrOrStderr(), "creating %d sandboxes on %d nodes\n", cfg.sandboxes, len(nodes))
	rep.Create = fanOut(cfg.sandboxes, cfg.concurrency, func(i int) error {
		sb, err := c.Create(ctx, rest.CreateSandboxRequest{Image: benchImage, Runtime: cfg.runtime, CPUs: cfg.cpus, MemoryMB: cfg.memoryMB,
			DiskMB: cfg.diskMB, Timeout: &benchTimeout})
		if err == nil {
			ids[i], placed[i] = sb.ID, sb.Node
		}
		return err
	})
	if rep.DedicatedNodes, rep.OnOthersNodes, err = checkDedicated(ctx, c, cfg.tenant, placed); err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "running a command in each\n")
	rep.Exec = fanOut(cfg.sandboxes, cfg.concurrency, func(i int) error {
		if ids[i] == "" {
			return errdefs.New(errdefs.FailedPrecondition, "sandbox %d was not created", i)
		}
		res, err := c.Sandbox(ids[i]).Run(ctx, "echo ok")
		switch {
		case err != nil:
			return err
		case res.Code != 0 || string(res.Stdout) != "ok\n":
			return fmt.Errorf("sandbox %s: echo ok: exit %d, output %q", ids[i], res.Code, res.Stdout)
		}
		return nil
	})
	fmt.Fprintf(cmd.ErrOrStderr(), "deleting them\n")
	rep.Delete = fanOut(cfg.sandboxes, cfg.concurrency, func(i int) error {
		if ids[i] == "" {
			return errdefs.New(errdefs.FailedPrecondition, "sandbox %d was not created", i)
		}
		return c.Delete(ctx, ids[i])
	})
	rep.TotalMs = rep.Create.Wall + rep.Exec.Wall + rep.Delete.Wall
	if err := writeJSONReport(cmd, cfg.jsonFile, rep); err != nil {
		return err
	}
	if cfg.jsonFile != "-" {
		printClusterReport(cmd, rep)
	}
	if rep.OnOthersNodes > 0 {
		return fmt.Errorf("%d sandboxes of tenant %s were placed on another tenant's dedicated nodes", rep.OnOthersNodes, cfg.tenant)
	}
	if rep.Create.OK+rep.Exec.OK+rep.Delete.OK != 3*cfg.sandboxes {
		return fmt.Errorf("not every operation succeeded: create %d, exec %d, delete %d of %d",
			rep.Create.OK, rep.Exec.OK, rep.Delete.OK, cfg.sandboxes)
	}
	return nil
}

// checkDedicated counts the nodes in pools that a tenant other than
// tenant owns, and the sandboxes of tenant placed (on nodes, by node ID)
// on one of them: a tenant's dedicated nodes must never run another
// tenant's sandbox.
func checkDedicated(ctx context.Context, c *den.Client, tenant string, placed []string) (dedicated, violations int, err error) {
	tenants, err := c.ListTenants(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("check dedicated nodes: list tenants: %w", err)
	}
	othersPool := map[string]bool{}
	for _, t := range tenants {
		if t.Name == tenant {
			continue
		}
		for _, p := range t.Placement.NodePools {
			othersPool[p] = true
		}
	}
	nodes, err := c.ListNodes(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("check dedicated nodes: list nodes: %w", err)
	}
	others := map[string]bool{}
	for _, n := range nodes {
		if n.Cluster != nil && othersPool[n.Cluster.Pool] {
			others[n.ID] = true
		}
	}
	for _, node := range placed {
		if others[node] {
			violations++
		}
	}
	return len(others), violations, nil
}

// fanOut runs op(0..n-1), c at a time, and summarizes their latencies.
func fanOut(n, c int, op func(i int) error) phaseStats {
	took := make([]time.Duration, n)
	okay := make([]bool, n)
	var mu sync.Mutex
	var errs []error
	var next atomic.Int64
	var wg sync.WaitGroup
	begin := time.Now()
	for range min(c, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t := time.Now()
				if err := op(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					continue
				}
				took[i], okay[i] = time.Since(t), true
			}
		})
	}
	wg.Wait()
	wall := time.Since(begin)
	var ok []time.Duration
	for i, d := range took {
		if okay[i] {
			ok = append(ok, d)
		}
	}
	return summarize(n, ok, errs, wall)
}

func printClusterReport(cmd *cobra.Command, r clusterReport) {
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "den bench cluster: %d sandboxes on %d nodes (%s), %d in flight, from %s (%d CPUs)\n",
		r.Sandboxes, r.Nodes, r.Runtime, r.Concurrency, r.Host, r.CPUs)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\tok\twall s\tper s\tp50 ms\tp99 ms\tmax ms")
	for _, p := range []struct {
		name string
		s    phaseStats
	}{{"create", r.Create}, {"exec", r.Exec}, {"delete", r.Delete}} {
		rate := 0.0
		if p.s.Wall > 0 {
			rate = float64(p.s.OK) / (p.s.Wall / 1000)
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%.1f\t%.0f\t%.1f\t%.1f\t%.1f\n", p.name, p.s.OK, p.s.N, p.s.Wall/1000, rate, p.s.P50, p.s.P99, p.s.Max)
	}
	tw.Flush()
	fmt.Fprintf(out, "total: %.1f s\n", r.TotalMs/1000)
	fmt.Fprintf(out, "check: %d sandboxes on other tenants' dedicated nodes (%d such nodes)\n", r.OnOthersNodes, r.DedicatedNodes)
	for _, p := range []phaseStats{r.Create, r.Exec, r.Delete} {
		for _, e := range p.Errors {
			fmt.Fprintf(out, "error: %s\n", e)
		}
	}
}

// ensureBenchImage imports benchImage, a one-file image, unless the
// server has it.
func ensureBenchImage(ctx context.Context, c *den.Client) error {
	if _, err := c.Images().Get(ctx, benchImage); err == nil {
		return nil
	} else if !den.IsNotFound(err) {
		return err
	}
	archive, err := tinyDockerArchive(benchImage)
	if err != nil {
		return err
	}
	_, err = c.Images().Import(ctx, bytes.NewReader(archive), benchImage)
	return err
}

// tinyDockerArchive is a `docker save` archive of an image named name
// with one layer holding /README.
func tinyDockerArchive(name string) ([]byte, error) {
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	body := []byte("den bench cluster image\n")
	if err := lw.WriteHeader(&tar.Header{Name: "README", Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(0, 0)}); err != nil {
		return nil, err
	}
	lw.Write(body)
	if err := lw.Close(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(layer.Bytes())
	diffID := "sha256:" + hex.EncodeToString(sum[:])
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux",
		"config": map[string]any{"Cmd": []string{"/bin/sh"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
	if err != nil {
		return nil, err
	}
	manifest, err := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{name}, "Layers": []string{"layer.tar"}}})
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for _, f := range []struct {
		name string
		data []byte
	}{{"config.json", config}, {"layer.tar", layer.Bytes()}, {"manifest.json", manifest}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
