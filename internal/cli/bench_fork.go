package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
	den "github.com/denhq/den/sdk/go"
)

// forkBenchConfig is the configuration of `den bench fork`.
type forkBenchConfig struct {
	benchConfig
	count    int
	memoryMB int64
	dirty    dirtyMemory
}

// forkReport is the JSON report of `den bench fork`.
type forkReport struct {
	Date     time.Time `json:"date"`
	Server   string    `json:"server"`
	Image    string    `json:"image"`
	Host     string    `json:"host"`
	CPUs     int       `json:"cpus"`
	Count    int       `json:"count"`
	MemoryMB int64     `json:"memory_mb,omitempty"`
	DirtyMB  int       `json:"dirty_mb"`
	DirtyIn  string    `json:"dirty_in,omitempty"`
	// Fork is `den fork ID --count N` as the API answers it (checkpoint,
	// seal, N clones running); ForkExec is until every copy has answered
	// a first command too. One sample per run.
	Fork     phaseStats `json:"fork"`
	ForkExec phaseStats `json:"fork_exec"`
	// RawCheckpoint and RawRestore are runsc's own checkpoint and restore
	// (+ first exec) of a busybox sandbox holding as much dirty memory, N
	// of each (gvisor.MeasureCheckpointFloor); RawFork is one checkpoint
	// plus the N restores one after the other: the raw work of a fork.
	RawCheckpoint *phaseStats `json:"raw_checkpoint,omitempty"`
	RawRestore    *phaseStats `json:"raw_restore,omitempty"`
	RawForkMS     float64     `json:"raw_fork_sequential_ms,omitempty"`
	RawFloorNote  string      `json:"raw_floor_note,omitempty"`
}

func (a *app) benchForkCmd() *cobra.Command {
	var cfg forkBenchConfig
	cmd := &cobra.Command{
		Use:   "fork",
		Short: "Measure fork: one sandbox into N running copies",
		Long: "Creates one source sandbox (optionally holding --dirty-mb MiB of random data in memory),\n" +
			"then times -n runs of `fork --count N` until every copy has answered a first command\n" +
			"(`sh -c 'echo ok'`); the copies are deleted after each run (not timed). With runsc (as\n" +
			"for `den bench tti`) it also times the raw work: runsc checkpoint, and N runsc restores.",
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.runscIsSet = cmd.Flags().Changed("runsc")
			switch {
			case cfg.sequential < 1 || cfg.memoryMB < 0:
				return usagef(cmd, "-n must be >= 1 and --memory-mb >= 0")
			case cfg.count < 1 || cfg.count > rest.MaxForkCount:
				return usagef(cmd, "--count must be between 1 and %d, got %d", rest.MaxForkCount, cfg.count)
			}
			if err := cfg.dirty.check(); err != nil {
				return usagef(cmd, "%v", err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			return a.benchFork(cmd, c, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.image, "image", "busybox", "image of the source sandbox")
	f.IntVar(&cfg.count, "count", 10, "copies per fork")
	f.IntVarP(&cfg.sequential, "n", "n", 5, "fork runs")
	f.Int64Var(&cfg.memoryMB, "memory-mb", 0, "memory of the source (0: the server's default, or enough for --dirty-mb)")
	cfg.dirty.addFlags(f, 0, "the source")
	f.StringVar(&cfg.jsonFile, "json", "", "write the JSON report to this file (- for stdout)")
	f.StringVar(&cfg.runsc, "runsc", "", "runsc binary for the raw floor (\"\" disables; default: runsc next to den, when root)")
	f.StringVar(&cfg.rootfs, "rootfs", "", "root filesystem for the raw floor (default: a busybox rootfs in a temporary directory)")
	f.StringVar(&cfg.platform, "platform", "systrap", "runsc platform for the raw floor (systrap, ptrace)")
	return cmd
}

func (a *app) benchFork(cmd *cobra.Command, c *den.Client, cfg forkBenchConfig) error {
	ctx := cmd.Context()
	host, _ := os.Hostname()
	rep := forkReport{Date: time.Now().UTC(), Server: c.URL(), Image: cfg.image, Host: host, CPUs: runtime.NumCPU(),
		Count: cfg.count, MemoryMB: cfg.memoryMB, DirtyMB: cfg.dirty.mb}
	if cfg.dirty.mb > 0 {
		rep.DirtyIn = cfg.dirty.kind
		rep.MemoryMB = max(rep.MemoryMB, int64(cfg.dirty.mb)*2+512)
	}
	src, err := c.Create(ctx, rest.CreateSandboxRequest{Image: cfg.image, MemoryMB: rep.MemoryMB})
	if err != nil {
		return fmt.Errorf("bench fork: create source: %w", err)
	}
	defer deleteQuietly(context.WithoutCancel(ctx), c, src.ID)
	if cfg.dirty.mb > 0 {
		if err := cfg.dirty.fill(ctx, src); err != nil {
			return fmt.Errorf("bench fork: %w", err)
		}
	}
	var fork, forkExec []time.Duration
	var errs []error
	begin := time.Now()
	for range cfg.sequential {
		f, fe, err := forkOnce(ctx, c, src.ID, cfg.count)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fork, forkExec = append(fork, f), append(forkExec, fe)
	}
	wall := time.Since(begin)
	rep.Fork = summarize(cfg.sequential, fork, errs, wall)
	rep.ForkExec = summarize(cfg.sequential, forkExec, errs, wall)
	a.measureForkFloor(ctx, cfg, &rep)
	if err := printForkBench(cmd.OutOrStdout(), rep); err != nil {
		return err
	}
	if err := writeJSONReport(cmd, cfg.jsonFile, rep); err != nil {
		return err
	}
	if len(errs) > 0 {
		fmt.Fprintln(cmd.ErrOrStderr(), "errors:", errs)
		return &ExitError{Code: 1, Message: "some runs failed"}
	}
	return nil
}

// forkOnce times one fork into count copies until the API answers, and
// until every copy has answered a first command; the copies are deleted
// after (not timed).
func forkOnce(ctx context.Context, c *den.Client, srcID string, count int) (fork, forkExec time.Duration, err error) {
	begin := time.Now()
	copies, err := c.Fork(ctx, srcID, rest.ForkRequest{Count: count})
	fork = time.Since(begin)
	defer deleteAll(ctx, c, copies)
	if err != nil {
		return 0, 0, fmt.Errorf("fork: %w", err)
	}
	if len(copies) != count {
		return 0, 0, fmt.Errorf("fork made %d copies, want %d", len(copies), count)
	}
	errs := make([]error, len(copies))
	var wg sync.WaitGroup
	for i, sb := range copies {
		wg.Go(func() {
			var out bytes.Buffer
			st, err := sb.Exec(ctx, den.ExecOptions{Cmd: "sh", Args: []string{"-c", "echo ok"}, Stdout: &out})
			if err != nil || !st.Exited || st.Code != 0 || out.String() != "ok\n" {
				errs[i] = fmt.Errorf("copy %s: first command: %v (%+v, %q)", sb.ID, err, st, out.String())
			}
		})
	}
	wg.Wait()
	forkExec = time.Since(begin)
	if err := errors.Join(errs...); err != nil {
		return 0, 0, err
	}
	return fork, forkExec, nil
}

// deleteAll deletes sandboxes, all at once.
func deleteAll(ctx context.Context, c *den.Client, list []*den.Sandbox) {
	var wg sync.WaitGroup
	for _, sb := range list {
		wg.Go(func() { deleteQuietly(ctx, c, sb.ID) })
	}
	wg.Wait()
}

// measureForkFloor fills the raw runsc figures of rep, or a note. It
// reuses the checkpoint floor of `den bench resume` with n = count: each
// of its iterations is one checkpoint and one restore (+ exec) of the same
// size, so one checkpoint plus the count restores is the raw work of a
// fork, done one after the other.
func (a *app) measureForkFloor(ctx context.Context, cfg forkBenchConfig, rep *forkReport) {
	runsc := cfg.runscPath()
	if runsc == "" || a.checkpointFloor == nil {
		rep.RawFloorNote = "not measured: no runsc (pass --runsc, or run as root with runsc next to den)"
		return
	}
	rootfs, cleanup, err := cfg.floorRootfs()
	if err != nil {
		rep.RawFloorNote = "not measured: " + err.Error()
		return
	}
	defer cleanup()
	begin := time.Now()
	ckpt, restore, err := a.checkpointFloor(ctx, runsc, rootfs, cfg.platform, cfg.dirty.kind, cfg.dirty.mb, cfg.count)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	c, r := summarize(cfg.count, ckpt, errs, time.Since(begin)), summarize(cfg.count, restore, errs, time.Since(begin))
	rep.RawCheckpoint, rep.RawRestore = &c, &r
	if len(ckpt) == 0 || len(restore) < cfg.count {
		rep.RawFloorNote = "incomplete: the raw fork total needs one checkpoint and every restore"
		return
	}
	total := ckpt[0]
	for _, d := range restore {
		total += d
	}
	rep.RawForkMS = ms(total)
	rep.RawFloorNote = fmt.Sprintf("raw fork = 1 checkpoint + %d restores one after the other (den restores up to 4 at once)", cfg.count)
}

func printForkBench(w io.Writer, rep forkReport) error {
	fmt.Fprintf(w, "den bench fork: %s, %d copies, %d MiB dirty memory, %d CPUs\n", rep.Image, rep.Count, rep.DirtyMB, rep.CPUs)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\tOK\tP50 ms\tP95 ms\tMIN ms\tMAX ms")
	row := func(name string, s *phaseStats) {
		if s != nil {
			fmt.Fprintf(tw, "%s\t%d/%d\t%.1f\t%.1f\t%.1f\t%.1f\n", name, s.OK, s.N, s.P50, s.P95, s.Min, s.Max)
		}
	}
	row(fmt.Sprintf("den fork --count %d", rep.Count), &rep.Fork)
	row(fmt.Sprintf("den fork --count %d + first command in all", rep.Count), &rep.ForkExec)
	row("raw runsc checkpoint (each)", rep.RawCheckpoint)
	row("raw runsc restore + exec (each)", rep.RawRestore)
	if rep.RawForkMS > 0 {
		fmt.Fprintf(tw, "raw fork: 1 checkpoint + %d restores\t1/1\t%.1f\t\t\t\n", rep.Count, rep.RawForkMS)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if rep.RawFloorNote != "" {
		fmt.Fprintln(w, "raw floor", rep.RawFloorNote)
	}
	return nil
}
