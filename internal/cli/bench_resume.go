package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/driver/gvisor"
	den "github.com/denhq/den/sdk/go"
)

// checkpointFloorFunc times n raw checkpoints and restores (+ first exec)
// of a sandbox holding dirtyMB MiB of memory of kind
// (gvisor.DirtyMemoryScript).
type checkpointFloorFunc func(ctx context.Context, runscPath, rootfsDir, platform, kind string, dirtyMB, n int) (ckpt, restore []time.Duration, err error)

// gvisorCheckpointFloor is checkpointFloorFunc for runsc.
func gvisorCheckpointFloor(ctx context.Context, runscPath, rootfsDir, platform, kind string, dirtyMB, n int) (ckpt, restore []time.Duration, err error) {
	timings, err := gvisor.MeasureCheckpointFloor(ctx, runscPath, rootfsDir, platform, kind, dirtyMB, n, false)
	for _, t := range timings {
		ckpt, restore = append(ckpt, t.Checkpoint), append(restore, t.Restore)
	}
	return ckpt, restore, err
}

// dirtyMemory is the random data a benchmarked sandbox holds in memory.
type dirtyMemory struct {
	mb   int
	kind string // gvisor.DirtyHeap or gvisor.DirtyTmpfs
	path string // the tmpfs file; heap: its name + ".ready" marks the fill done
}

// addFlags registers --dirty-mb (default mb), --dirty-in and --dirty-path.
func (m *dirtyMemory) addFlags(f *pflag.FlagSet, mb int, who string) {
	f.IntVar(&m.mb, "dirty-mb", mb, "MiB of random data "+who+" holds in memory")
	f.StringVar(&m.kind, "dirty-in", gvisor.DirtyHeap, "where it holds them: heap (a process's memory) or tmpfs (a file at --dirty-path)")
	f.StringVar(&m.path, "dirty-path", "/dev/shm/den-bench-dirty", "the tmpfs file (on a memory file system)")
}

// check validates the flags.
func (m dirtyMemory) check() error {
	if m.mb < 0 {
		return fmt.Errorf("--dirty-mb must be >= 0, got %d", m.mb)
	}
	if _, err := gvisor.DirtyMemoryScript(m.kind, m.mb, m.path); err != nil {
		return fmt.Errorf("--dirty-in: %w", err)
	}
	return nil
}

// fill makes sb hold the memory.
func (m dirtyMemory) fill(ctx context.Context, sb *den.Sandbox) error {
	script, err := gvisor.DirtyMemoryScript(m.kind, m.mb, m.path)
	if err != nil {
		return err
	}
	st, err := sb.Exec(ctx, den.ExecOptions{Cmd: "sh", Args: []string{"-c", script}})
	if err != nil || !st.Exited || st.Code != 0 {
		return fmt.Errorf("fill memory: %v (%+v)", err, st)
	}
	return nil
}

// resumeBenchConfig is the configuration of `den bench resume`.
type resumeBenchConfig struct {
	benchConfig
	dirty dirtyMemory
	// cpus is the sandbox's CPU limit (0: the server's default).
	cpus float64
}

// resumeReport is the JSON report of `den bench resume`.
type resumeReport struct {
	Date    time.Time `json:"date"`
	Server  string    `json:"server"`
	Image   string    `json:"image"`
	Host    string    `json:"host"`
	CPUs    int       `json:"cpus"`
	DirtyMB int       `json:"dirty_mb"`
	DirtyIn string    `json:"dirty_in"`
	// Suspend is `den suspend` as the API answers it (checkpoint written,
	// sealed, recorded); Resume is `den resume` until the sandbox runs;
	// ResumeExec adds a first command.
	Suspend    phaseStats `json:"suspend"`
	Resume     phaseStats `json:"resume"`
	ResumeExec phaseStats `json:"resume_exec"`
	// RawCheckpoint and RawRestore are runsc's own checkpoint and restore
	// (+ first exec) of a busybox sandbox holding as much dirty memory.
	RawCheckpoint *phaseStats `json:"raw_checkpoint,omitempty"`
	RawRestore    *phaseStats `json:"raw_restore,omitempty"`
	RawFloorNote  string      `json:"raw_floor_note,omitempty"`
}

func (a *app) benchResumeCmd() *cobra.Command {
	var cfg resumeBenchConfig
	cmd := &cobra.Command{
		Use:   "resume",
		Short: "Measure suspend and resume of a sandbox holding dirty memory",
		Long: "Creates one sandbox, fills --dirty-mb MiB of its memory with random data, then\n" +
			"times N suspend -> resume -> first command cycles and prints percentiles.\n" +
			"With runsc (as for `den bench tti`) it also times raw runsc checkpoint and\n" +
			"restore of a busybox sandbox holding the same amount of memory.",
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.runscIsSet = cmd.Flags().Changed("runsc")
			if cfg.sequential < 1 {
				return usagef(cmd, "-n must be >= 1")
			}
			if err := cfg.dirty.check(); err != nil {
				return usagef(cmd, "%v", err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			return a.benchResume(cmd, c, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.image, "image", "busybox", "image of the sandbox")
	f.IntVarP(&cfg.sequential, "n", "n", 20, "suspend/resume cycles")
	cfg.dirty.addFlags(f, 256, "the sandbox")
	f.Float64Var(&cfg.cpus, "cpus", 0, "CPU limit of the sandbox (0: the server's default)")
	f.StringVar(&cfg.jsonFile, "json", "", "write the JSON report to this file (- for stdout)")
	f.StringVar(&cfg.runsc, "runsc", "", "runsc binary for the raw floor (\"\" disables; default: runsc next to den, when root)")
	f.StringVar(&cfg.platform, "platform", "systrap", "runsc platform for the raw floor (systrap, ptrace)")
	return cmd
}

func (a *app) benchResume(cmd *cobra.Command, c *den.Client, cfg resumeBenchConfig) error {
	ctx := cmd.Context()
	host, _ := os.Hostname()
	rep := resumeReport{Date: time.Now().UTC(), Server: c.URL(), Image: cfg.image, Host: host,
		CPUs: runtime.NumCPU(), DirtyMB: cfg.dirty.mb, DirtyIn: cfg.dirty.kind}
	sb, err := c.Create(ctx, rest.CreateSandboxRequest{Image: cfg.image, CPUs: cfg.cpus, MemoryMB: int64(cfg.dirty.mb)*2 + 512})
	if err != nil {
		return fmt.Errorf("bench resume: create sandbox: %w", err)
	}
	defer deleteQuietly(context.WithoutCancel(ctx), c, sb.ID)
	if err := cfg.dirty.fill(ctx, sb); err != nil {
		return fmt.Errorf("bench resume: %w", err)
	}
	var susp, res, resExec []time.Duration
	var errs []error
	begin := time.Now()
	for range cfg.sequential {
		s, r, re, err := resumeOnce(ctx, sb)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		susp, res, resExec = append(susp, s), append(res, r), append(resExec, re)
	}
	wall := time.Since(begin)
	rep.Suspend = summarize(cfg.sequential, susp, errs, wall)
	rep.Resume = summarize(cfg.sequential, res, errs, wall)
	rep.ResumeExec = summarize(cfg.sequential, resExec, errs, wall)
	a.measureCheckpointFloor(ctx, cfg, &rep)
	if err := printResumeBench(cmd.OutOrStdout(), rep); err != nil {
		return err
	}
	if err := writeJSONReport(cmd, cfg.jsonFile, rep); err != nil {
		return err
	}
	if len(errs) > 0 {
		fmt.Fprintln(cmd.ErrOrStderr(), "errors:", errs)
		return &ExitError{Code: 1, Message: "some cycles failed"}
	}
	return nil
}

// resumeOnce times one suspend, one resume, and resume + a first command.
func resumeOnce(ctx context.Context, sb *den.Sandbox) (susp, res, resExec time.Duration, err error) {
	t0 := time.Now()
	if _, err = sb.Suspend(ctx); err != nil {
		return 0, 0, 0, fmt.Errorf("suspend: %w", err)
	}
	t1 := time.Now()
	if _, err = sb.Resume(ctx); err != nil {
		return 0, 0, 0, fmt.Errorf("resume: %w", err)
	}
	t2 := time.Now()
	var out bytes.Buffer
	st, err := sb.Exec(ctx, den.ExecOptions{Cmd: "sh", Args: []string{"-c", "echo ok"}, Stdout: &out})
	if err != nil || !st.Exited || st.Code != 0 || out.String() != "ok\n" {
		return 0, 0, 0, fmt.Errorf("first command after resume: %v (%+v, %q)", err, st, out.String())
	}
	return t1.Sub(t0), t2.Sub(t1), time.Since(t1), nil
}

// measureCheckpointFloor fills the raw runsc figures of rep, or a note.
func (a *app) measureCheckpointFloor(ctx context.Context, cfg resumeBenchConfig, rep *resumeReport) {
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
	n := min(cfg.sequential, 10)
	begin := time.Now()
	ckpt, restore, err := a.checkpointFloor(ctx, runsc, rootfs, cfg.platform, cfg.dirty.kind, cfg.dirty.mb, n)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	c, r := summarize(n, ckpt, errs, time.Since(begin)), summarize(n, restore, errs, time.Since(begin))
	rep.RawCheckpoint, rep.RawRestore = &c, &r
}

func printResumeBench(w io.Writer, rep resumeReport) error {
	fmt.Fprintf(w, "den bench resume: %s, %d MiB dirty memory (%s), %d CPUs\n", rep.Image, rep.DirtyMB, rep.DirtyIn, rep.CPUs)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\tOK\tP50 ms\tP95 ms\tMIN ms\tMAX ms")
	row := func(name string, s *phaseStats) {
		if s != nil {
			fmt.Fprintf(tw, "%s\t%d/%d\t%.1f\t%.1f\t%.1f\t%.1f\n", name, s.OK, s.N, s.P50, s.P95, s.Min, s.Max)
		}
	}
	row("den suspend", &rep.Suspend)
	row("den resume", &rep.Resume)
	row("den resume + first command", &rep.ResumeExec)
	row("raw runsc checkpoint", rep.RawCheckpoint)
	row("raw runsc restore + exec", rep.RawRestore)
	if err := tw.Flush(); err != nil {
		return err
	}
	if rep.RawFloorNote != "" {
		fmt.Fprintln(w, "raw floor", rep.RawFloorNote)
	}
	return nil
}

// writeJSONReport writes v as indented JSON to file ("-" is stdout, "" none).
func writeJSONReport(cmd *cobra.Command, file string, v any) error {
	if file == "" {
		return nil
	}
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if file == "-" {
		_, err = cmd.OutOrStdout().Write(data)
		return err
	}
	return os.WriteFile(file, data, 0o644)
}
