package cli

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
	den "github.com/denhq/den/sdk/go"
)

func (a *app) benchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure den",
		Args:  argsBetween(0, 0, "a subcommand (tti, resume)"),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.benchTTICmd(), a.benchResumeCmd())
	cmd.AddCommand(a.benchForkCmd(), a.benchPortsCmd())
	cmd.AddCommand(a.benchSchedulerCmd(), a.benchClusterCmd(), a.benchFailoverCmd())
	return cmd
}

// benchConfig is the configuration of `den bench tti`.
type benchConfig struct {
	image      string
	sequential int
	concurrent int
	jsonFile   string
	runsc      string
	runscIsSet bool
	rootfs     string
	platform   string
	// pool, when > 0, runs den's phases against a warm pool of that size.
	pool int
}

func (a *app) benchTTICmd() *cobra.Command {
	var cfg benchConfig
	cmd := &cobra.Command{
		Use:   "tti",
		Short: "Measure time to interactive: create a sandbox and run a first command",
		Long: "Times N sequential, then C concurrent, iterations of create -> exec `sh -c 'echo ok'` ->\n" +
			"output read (the delete that follows is not timed), and prints percentiles.\n" +
			"With runsc (--runsc, or runsc next to the den binary when run as root) it also\n" +
			"times raw runsc create+start+exec on a busybox rootfs, the floor den is compared to.\n" +
			"With --pool N, den's phases create from a warm pool of N spares of the image: each\n" +
			"sequential iteration starts once the pool is full again (the wait is not timed).",
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.runscIsSet = cmd.Flags().Changed("runsc")
			if cfg.sequential < 0 || cfg.concurrent < 0 || cfg.sequential+cfg.concurrent == 0 {
				return usagef(cmd, "-n and -c must be >= 0 and not both 0")
			}
			if cfg.pool < 0 || cfg.pool > rest.MaxPoolSize {
				return usagef(cmd, "--pool must be between 0 and %d", rest.MaxPoolSize)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			return a.benchTTI(cmd, c, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.image, "image", "busybox", "image of the sandboxes")
	f.IntVarP(&cfg.sequential, "sequential", "n", 50, "sequential iterations")
	f.IntVarP(&cfg.concurrent, "concurrent", "c", 20, "concurrent iterations (all at once)")
	f.StringVar(&cfg.jsonFile, "json", "", "write the JSON report to this file (- for stdout)")
	f.StringVar(&cfg.runsc, "runsc", "", "runsc binary for the raw floor (\"\" disables; default: runsc next to den, when root)")
	f.StringVar(&cfg.rootfs, "rootfs", "", "root filesystem for the raw floor (default: a busybox rootfs in a temporary directory)")
	f.StringVar(&cfg.platform, "platform", "systrap", "runsc platform for the raw floor (systrap, ptrace)")
	f.IntVar(&cfg.pool, "pool", 0, "create from a warm pool of this many spares (0: no pool)")
	return cmd
}

// phaseStats summarizes the iterations of one phase. Durations are in
// milliseconds.
type phaseStats struct {
	N      int      `json:"n"`
	OK     int      `json:"ok"`
	P50    float64  `json:"p50_ms"`
	P95    float64  `json:"p95_ms"`
	P99    float64  `json:"p99_ms"`
	Min    float64  `json:"min_ms"`
	Max    float64  `json:"max_ms"`
	Wall   float64  `json:"wall_ms"`
	Errors []string `json:"errors,omitempty"`
}

// maxReportedErrors bounds the errors kept per phase.
const maxReportedErrors = 5

// summarize computes the stats of the successful durations of n tries.
func summarize(n int, took []time.Duration, errs []error, wall time.Duration) phaseStats {
	s := phaseStats{N: n, OK: len(took), Wall: ms(wall)}
	for i, err := range errs {
		if i == maxReportedErrors {
			break
		}
		s.Errors = append(s.Errors, err.Error())
	}
	if len(took) == 0 {
		return s
	}
	sorted := slices.Clone(took)
	slices.Sort(sorted)
	s.P50, s.P95, s.P99 = ms(percentile(sorted, 50)), ms(percentile(sorted, 95)), ms(percentile(sorted, 99))
	s.Min, s.Max = ms(sorted[0]), ms(sorted[len(sorted)-1])
	return s
}

// percentile is the nearest-rank percentile p of sorted (not empty).
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// ttiOnce is one timed create + first exec, then an untimed delete.
func ttiOnce(ctx context.Context, c *den.Client, image string) (time.Duration, error) {
	begin := time.Now()
	sb, err := c.Create(ctx, rest.CreateSandboxRequest{Image: image})
	if err != nil {
		return 0, err
	}
	defer deleteQuietly(ctx, c, sb.ID)
	var out bytes.Buffer
	st, err := sb.Exec(ctx, den.ExecOptions{Cmd: "sh", Args: []string{"-c", "echo ok"}, Stdout: &out})
	took := time.Since(begin)
	switch {
	case err != nil:
		return 0, err
	case st.Code != 0 || out.String() != "ok\n":
		return 0, fmt.Errorf("sandbox %s: echo ok: exit %d, output %q", sb.ID, st.Code, out.String())
	}
	return took, nil
}

func deleteQuietly(ctx context.Context, c *den.Client, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
	defer cancel()
	_ = c.Delete(ctx, id)
}

// runSequential runs n iterations one after the other; before each, ready
// (when not nil) waits, untimed, until the next may start.
func runSequential(ctx context.Context, c *den.Client, image string, n int, ready func() error) phaseStats {
	var took []time.Duration
	var errs []error
	begin := time.Now()
	for range n {
		if ready != nil {
			if err := ready(); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		d, err := ttiOnce(ctx, c, image)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		took = append(took, d)
	}
	return summarize(n, took, errs, time.Since(begin))
}

// runConcurrent runs n iterations at once.
func runConcurrent(ctx context.Context, c *den.Client, image string, n int) phaseStats {
	var mu sync.Mutex
	var took []time.Duration
	var errs []error
	var wg sync.WaitGroup
	begin := time.Now()
	for range n {
		wg.Go(func() {
			d, err := ttiOnce(ctx, c, image)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			took = append(took, d)
		})
	}
	wg.Wait()
	return summarize(n, took, errs, time.Since(begin))
}
