package cli

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/denhq/den/internal/scheduler/schedbench"
)

// schedulerBenchReport is the JSON report of `den bench scheduler`.
type schedulerBenchReport struct {
	Date      time.Time `json:"date"`
	Host      string    `json:"host"`
	CPUs      int       `json:"cpus"`
	GoVersion string    `json:"go_version"`
	// GOMAXPROCS is what the measured loops ran with; GOGC the GC percent.
	GOMAXPROCS int                 `json:"gomaxprocs"`
	GOGC       int                 `json:"gogc"`
	Seed       uint64              `json:"seed"`
	Workload   string              `json:"workload"`
	Runs       []schedbench.Result `json:"runs"`
}

func (a *app) benchSchedulerCmd() *cobra.Command {
	var (
		nodes    []int
		cfg      = schedbench.DefaultConfig(0)
		jsonFile string
	)
	cmd := &cobra.Command{
		Use:   "scheduler",
		Short: "Measure the scheduler's placement decisions in process (no raft, no network)",
		Long: "Builds a simulated cluster per --nodes size, pre-fills it to --fill of the binding resource,\n" +
			"then times --churn delete+place pairs on one core (GOMAXPROCS=1), bursts of 1,000 placements,\n" +
			"fill to the first failure (best-fit and spread) and largest-shape headroom, and a naive\n" +
			"linear-scan best-fit in the same harness as a floor. The scheduler's invariants are checked\n" +
			"after every phase. Fixed seeds: the same flags decide the same placements.\n\n" +
			"Workload: " + schedbench.Workload,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(nodes) == 0 || cfg.Fill <= 0 || cfg.Fill >= 1 || cfg.ChurnOps <= 0 || cfg.Bursts <= 0 || cfg.NaiveOps < 0 {
				return usagef(cmd, "--nodes must be given, --fill in (0,1), --churn and --bursts > 0, --naive >= 0")
			}
			for _, n := range nodes {
				if n < 100 {
					return usagef(cmd, "--nodes: %d is under 100", n)
				}
			}
			return benchScheduler(cmd, nodes, cfg, jsonFile)
		},
	}
	f := cmd.Flags()
	f.IntSliceVar(&nodes, "nodes", []int{10_000, 100_000}, "cluster sizes to run")
	f.Float64Var(&cfg.Fill, "fill", cfg.Fill, "pre-fill occupancy of the binding resource")
	f.IntVar(&cfg.ChurnOps, "churn", cfg.ChurnOps, "measured delete+place pairs")
	f.IntVar(&cfg.Bursts, "bursts", cfg.Bursts, "timed bursts of 1,000 placements")
	f.IntVar(&cfg.NaiveOps, "naive", cfg.NaiveOps, "delete+place pairs for the linear-scan floor (0 skips it)")
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the cluster and the request mix")
	f.StringVar(&jsonFile, "json", "", "write the JSON report to this file (- for stdout)")
	return cmd
}

func benchScheduler(cmd *cobra.Command, nodes []int, cfg schedbench.Config, jsonFile string) error {
	host, _ := os.Hostname()
	rep := schedulerBenchReport{Date: time.Now().UTC(), Host: host, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		GOMAXPROCS: 1, GOGC: schedbench.GOGC(), Seed: cfg.Seed, Workload: schedbench.Workload}
	for _, n := range nodes {
		c := cfg
		c.Nodes = n
		fmt.Fprintf(cmd.ErrOrStderr(), "scheduler bench: %d nodes\n", n)
		r, err := schedbench.Run(c)
		if err != nil {
			return fmt.Errorf("scheduler bench at %d nodes: %w", n, err)
		}
		rep.Runs = append(rep.Runs, r)
	}
	out := cmd.OutOrStdout()
	if jsonFile == "-" {
		out = cmd.ErrOrStderr()
	}
	if err := printSchedulerReport(out, rep); err != nil {
		return err
	}
	return writeJSONReport(cmd, jsonFile, rep)
}

func printSchedulerReport(w io.Writer, rep schedulerBenchReport) error {
	fmt.Fprintf(w, "%s, %d CPUs, GOMAXPROCS=%d (measured loops), GOGC=%d, seed %d\n",
		rep.GoVersion, rep.CPUs, rep.GOMAXPROCS, rep.GOGC, rep.Seed)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "placements/s and decisions/s (place, failed place or delete) are over the churn loop's wall time;")
	fmt.Fprintln(w, "Place calls/s and the latencies are over the time inside Place; naive/s is the floor's Place calls/s")
	fmt.Fprintln(tw, "nodes\tfill\tplacements/s\tdecisions/s\tPlace calls/s\tp50 µs\tp99 µs\tp99.9 µs\tmax µs\tfailed\t1,000 p50/max ms\tfill-to-fail bf/spread\theadroom bf/spread\tnaive/s\tspeedup")
	for _, r := range rep.Runs {
		c := r.Churn
		naive, speedup := "-", "-"
		if r.Naive != nil {
			naive, speedup = fmt.Sprintf("%.0f", r.Naive.PlaceCallsPerSec), fmt.Sprintf("%.0fx", r.SpeedupVsNaive)
		}
		fmt.Fprintf(tw, "%d\t%.1f%%\t%.0f\t%.0f\t%.0f\t%.2f\t%.2f\t%.1f\t%.0f\t%d/%d\t%.2f/%.2f\t%.1f%%/%.1f%%\t%d/%d (%.2fx)\t%s\t%s\n",
			r.Nodes, 100*r.PrefillUtil, c.PlacementsPerSec, c.DecisionsPerSec, c.PlaceCallsPerSec, c.Latency.P50, c.Latency.P99, c.Latency.P999,
			c.Latency.Max, c.Failures, c.Ops, r.Burst1000P50Ms, r.Burst1000MaxMs, 100*r.FillBestFit, 100*r.FillSpread,
			r.HeadroomBestFit, r.HeadroomSpread, r.HeadroomRatio, naive, speedup)
	}
	return tw.Flush()
}
