package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/image"
	den "github.com/denhq/den/sdk/go"
)

// floorFunc measures n raw runtime iterations, the floor den's numbers are
// compared to; gvisor.MeasureRawFloor is the real one.
type floorFunc func(ctx context.Context, runscPath, rootfsDir, platform string, n int) ([]time.Duration, error)

// benchReport is the JSON report of `den bench tti`.
type benchReport struct {
	Date   time.Time `json:"date"`
	Server string    `json:"server"`
	Image  string    `json:"image"`
	// Pool is the size of the warm pool den's phases created from (0: none).
	Pool       int         `json:"pool,omitempty"`
	CLIVersion string      `json:"cli_version"`
	Host       string      `json:"host"`
	CPUs       int         `json:"cpus"`
	Sequential *phaseStats `json:"sequential,omitempty"`
	Concurrent *phaseStats `json:"concurrent,omitempty"`
	// RawFloor is raw runsc create+start+exec, sequential.
	RawFloor     *phaseStats `json:"raw_floor,omitempty"`
	RawFloorNote string      `json:"raw_floor_note,omitempty"`
	// RatioP50 is den's sequential p50 over the raw floor's p50.
	RatioP50 float64 `json:"ratio_p50,omitempty"`
}

// benchTTI runs `den bench tti`: den's phases, then the raw floor.
func (a *app) benchTTI(cmd *cobra.Command, c *den.Client, cfg benchConfig) error {
	ctx := cmd.Context()
	host, _ := os.Hostname()
	rep := benchReport{Date: time.Now().UTC(), Server: c.URL(), Image: cfg.image, Pool: cfg.pool,
		CLIVersion: Version, Host: host, CPUs: runtime.NumCPU()}
	var ready func() error
	if cfg.pool > 0 {
		p, err := c.CreatePool(ctx, rest.CreatePoolRequest{Image: cfg.image, Size: cfg.pool})
		if err != nil {
			return err
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
			defer cancel()
			if err := c.DeletePool(ctx, p.ID); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "den: delete the bench's pool %s: %v\n", p.ID, err)
			}
		}()
		ready = func() error { _, err := waitPoolFull(ctx, c, p.ID, poolFillTimeout, nil); return err }
		fmt.Fprintf(cmd.ErrOrStderr(), "filling warm pool %s with %d spares of %s\n", p.ID, cfg.pool, cfg.image)
		if err := ready(); err != nil {
			return err
		}
	}
	if cfg.sequential > 0 {
		s := runSequential(ctx, c, cfg.image, cfg.sequential, ready)
		rep.Sequential = &s
	}
	if cfg.concurrent > 0 {
		if ready != nil {
			if err := ready(); err != nil {
				return err
			}
		}
		s := runConcurrent(ctx, c, cfg.image, cfg.concurrent)
		rep.Concurrent = &s
	}
	a.measureFloor(ctx, cfg, &rep)
	if err := printBench(cmd.OutOrStdout(), cmd.ErrOrStderr(), rep); err != nil {
		return err
	}
	if err := writeReport(cmd, cfg.jsonFile, rep); err != nil {
		return err
	}
	for _, p := range []*phaseStats{rep.Sequential, rep.Concurrent} {
		if p != nil && p.OK < p.N {
			return &ExitError{Code: 1, Message: "some iterations failed"}
		}
	}
	return nil
}

// poolFillTimeout bounds the wait for a bench's warm pool to fill.
const poolFillTimeout = 5 * time.Minute

// measureFloor fills the raw floor of rep, or a note on why there is none.
func (a *app) measureFloor(ctx context.Context, cfg benchConfig, rep *benchReport) {
	runsc := cfg.runscPath()
	n := max(cfg.sequential, 1)
	if runsc == "" || a.floor == nil {
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
	took, err := a.floor(ctx, runsc, rootfs, cfg.platform, n)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	s := summarize(n, took, errs, time.Since(begin))
	rep.RawFloor = &s
	if rep.Sequential != nil && rep.Sequential.OK > 0 && s.OK > 0 && s.P50 > 0 {
		rep.RatioP50 = rep.Sequential.P50 / s.P50
	}
}

// runscPath is the runsc to measure the floor with; "" for none.
func (cfg benchConfig) runscPath() string {
	if cfg.runscIsSet {
		return cfg.runsc
	}
	if os.Geteuid() != 0 {
		return ""
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(exe), "runsc")
	if fi, err := os.Stat(p); err != nil || fi.IsDir() {
		return ""
	}
	return p
}

// floorRootfs returns the floor's root filesystem: --rootfs, else a
// busybox rootfs in a temporary directory that cleanup removes.
func (cfg benchConfig) floorRootfs() (string, func(), error) {
	if cfg.rootfs != "" {
		return cfg.rootfs, func() {}, nil
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return "", nil, fmt.Errorf("no busybox to build a rootfs (apt-get install busybox-static, or pass --rootfs)")
	}
	dir, err := os.MkdirTemp("", "den-bench-rootfs-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	if err := image.WriteBusyboxRootfs(dir, bb); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("build busybox rootfs: %w", err)
	}
	return dir, cleanup, nil
}

// printBench writes the human summary to out and the errors to errOut.
func printBench(out, errOut io.Writer, rep benchReport) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tok\tp50 ms\tp95 ms\tp99 ms\tmin ms\tmax ms\t")
	row := func(name string, s *phaseStats) {
		if s == nil {
			return
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", name, s.OK, s.N, s.P50, s.P95, s.P99, s.Min, s.Max)
		for _, e := range s.Errors {
			fmt.Fprintf(errOut, "den: %s: %s\n", name, e)
		}
	}
	name := func(phase string) string {
		if rep.Pool > 0 {
			return fmt.Sprintf("%s (pool %d)", phase, rep.Pool)
		}
		return phase
	}
	row(name("sequential"), rep.Sequential)
	row(name("concurrent"), rep.Concurrent)
	row("raw runsc", rep.RawFloor)
	if err := tw.Flush(); err != nil {
		return err
	}
	if rep.RatioP50 > 0 {
		fmt.Fprintf(out, "den p50 / raw runsc p50: %.2fx\n", rep.RatioP50)
	}
	if rep.RawFloorNote != "" {
		fmt.Fprintf(out, "raw floor %s\n", rep.RawFloorNote)
	}
	return nil
}

// writeReport writes rep as JSON to file ("" = nowhere, "-" = stdout).
func writeReport(cmd *cobra.Command, file string, rep benchReport) error {
	switch file {
	case "":
		return nil
	case "-":
		return printJSON(cmd.OutOrStdout(), rep)
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(file, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
