package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
	den "github.com/denhq/den/sdk/go"
)

// portsBenchConfig is the configuration of `den bench ports`.
type portsBenchConfig struct {
	image       string
	requests    int
	concurrency int
	sandboxURL  string
	jsonFile    string
	direct      bool
}

// portsReport is the JSON report of `den bench ports`.
type portsReport struct {
	Date        time.Time `json:"date"`
	Server      string    `json:"server"`
	Image       string    `json:"image"`
	Host        string    `json:"host"`
	CPUs        int       `json:"cpus"`
	Requests    int       `json:"requests"`
	Concurrency int       `json:"concurrency"`
	// Proxied are the requests through den's sandbox traffic listener to
	// busybox httpd in a sandbox; Direct the same burst to busybox httpd
	// on the host, the floor.
	Proxied    phaseStats  `json:"proxied"`
	ProxiedRPS float64     `json:"proxied_rps"`
	Direct     *phaseStats `json:"direct,omitempty"`
	DirectRPS  float64     `json:"direct_rps,omitempty"`
}

func (a *app) benchPortsCmd() *cobra.Command {
	var cfg portsBenchConfig
	cmd := &cobra.Command{
		Use:   "ports",
		Short: "Measure a burst of concurrent requests to a port of a sandbox through its URL",
		Long: "Creates one sandbox running busybox httpd on port 8080 and sends --requests GET requests,\n" +
			"--concurrency at a time (each on its own connection), through den's sandbox traffic\n" +
			"listener with the access token. Prints latency percentiles, requests per second and\n" +
			"the errors; with --direct the same burst against busybox httpd on this host, the floor.",
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.requests < 1 || cfg.concurrency < 1 {
				return usagef(cmd, "--requests and --concurrency must be >= 1")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			return a.benchPorts(cmd, c, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.image, "image", "busybox", "image of the sandbox (needs busybox httpd)")
	f.IntVar(&cfg.requests, "requests", 10000, "requests in all")
	f.IntVar(&cfg.concurrency, "concurrency", 10000, "requests in flight at once")
	f.StringVar(&cfg.sandboxURL, "sandbox-url", "", "address of the sandbox traffic listener (default: $"+envSandboxURL+", else the data dir's env file)")
	f.StringVar(&cfg.jsonFile, "json", "", "write the JSON report to this file (- for stdout)")
	f.BoolVar(&cfg.direct, "direct", false, "also measure busybox httpd on this host (needs busybox in PATH; its small listen backlog drops connections in large bursts)")
	return cmd
}

func (a *app) benchPorts(cmd *cobra.Command, c *den.Client, cfg portsBenchConfig) error {
	ctx := cmd.Context()
	host, _ := os.Hostname()
	rep := portsReport{Date: time.Now().UTC(), Server: c.URL(), Image: cfg.image, Host: host, CPUs: runtime.NumCPU(),
		Requests: cfg.requests, Concurrency: cfg.concurrency}
	sb, err := c.Create(ctx, rest.CreateSandboxRequest{Image: cfg.image, MemoryMB: 1024})
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
		defer cancel()
		_ = c.Delete(ctx, sb.ID)
	}()
	serve := "mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"
	go func() { // runs until the sandbox is deleted
		_, _ = c.Sandbox(sb.ID).Exec(context.WithoutCancel(ctx), den.ExecOptions{Cmd: "sh", Args: []string{"-c", serve}, Tag: "bench-httpd"})
	}()
	p, err := a.portURL(ctx, sb.ID, 8080, cfg.sandboxURL)
	if err != nil {
		return err
	}
	u, err := url.Parse(p.URL)
	if err != nil {
		return err
	}
	target := "http://127.0.0.1:" + u.Port() + "/"
	hdr := http.Header{"X-Access-Token": {p.token}}
	if err := waitHTTP(ctx, target, u.Host, hdr, 30*time.Second); err != nil {
		return fmt.Errorf("httpd in sandbox %s: %w", sb.ID, err)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "proxied: %d requests, %d at once...\n", cfg.requests, cfg.concurrency)
	rep.Proxied, rep.ProxiedRPS = burst(ctx, target, u.Host, hdr, cfg.requests, cfg.concurrency)
	if cfg.direct {
		d, rps, err := directBurst(ctx, cfg)
		if err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "direct floor skipped: %v\n", err)
		} else {
			rep.Direct, rep.DirectRPS = &d, rps
		}
	}
	return writePortsReport(cmd, cfg.jsonFile, rep)
}

// directBurst runs the burst against busybox httpd on this host.
func directBurst(ctx context.Context, cfg portsBenchConfig) (phaseStats, float64, error) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return phaseStats{}, 0, err
	}
	dir, err := os.MkdirTemp("", "den-bench-www-")
	if err != nil {
		return phaseStats{}, 0, err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(dir+"/index.html", []byte("ok\n"), 0o644); err != nil {
		return phaseStats{}, 0, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return phaseStats{}, 0, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	srv := exec.CommandContext(ctx, bb, "httpd", "-f", "-p", "127.0.0.1:"+strconv.Itoa(port), "-h", dir)
	if err := srv.Start(); err != nil {
		return phaseStats{}, 0, err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	target := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	if err := waitHTTP(ctx, target, "", nil, 10*time.Second); err != nil {
		return phaseStats{}, 0, err
	}
	st, rps := burst(ctx, target, "", nil, cfg.requests, cfg.concurrency)
	return st, rps, nil
}

// waitHTTP polls GET target until it answers 200.
func waitHTTP(ctx context.Context, target, host string, hdr http.Header, d time.Duration) error {
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		if last = getOnce(ctx, http.DefaultClient, target, host, hdr); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("no answer within %s: %w", d, last)
}

// getOnce sends one GET and checks for a 200 with a body.
func getOnce(ctx context.Context, hc *http.Client, target, host string, hdr http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	req.Host = host
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || len(body) == 0 {
		return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, body)
	}
	return nil
}

// burst sends n GETs, c at a time, each on a new connection, and returns
// their statistics and the requests per second over the whole burst.
func burst(ctx context.Context, target, host string, hdr http.Header, n, c int) (phaseStats, float64) {
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, MaxConnsPerHost: 0,
		DialContext: (&net.Dialer{Timeout: 60 * time.Second}).DialContext}, Timeout: 5 * time.Minute}
	took := make([]time.Duration, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	begin := time.Now()
	for range min(c, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t := time.Now()
				errs[i] = getOnce(ctx, hc, target, host, hdr)
				took[i] = time.Since(t)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	wall := time.Since(begin)
	var ok []time.Duration
	var bad []error
	for i := range n {
		if errs[i] != nil {
			bad = append(bad, errs[i])
			continue
		}
		ok = append(ok, took[i])
	}
	return summarize(n, ok, bad, wall), float64(len(ok)) / wall.Seconds()
}

func writePortsReport(cmd *cobra.Command, file string, rep portsReport) error {
	if file != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		data = append(data, '\n')
		if file == "-" {
			_, err = cmd.OutOrStdout().Write(data)
			return err
		}
		if err := os.WriteFile(file, data, 0o644); err != nil {
			return err
		}
	}
	w := cmd.OutOrStdout()
	if file == "-" {
		w = cmd.ErrOrStderr()
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\tOK\tP50\tP99\tMAX\tWALL\tREQ/S")
	row := func(name string, s phaseStats, rps float64) {
		fmt.Fprintf(tw, "%s\t%d/%d\t%.1fms\t%.1fms\t%.1fms\t%.2fs\t%.0f\n", name, s.OK, s.N, s.P50, s.P99, s.Max, s.Wall/1000, rps)
	}
	row("proxied", rep.Proxied, rep.ProxiedRPS)
	if rep.Direct != nil {
		row("direct (host)", *rep.Direct, rep.DirectRPS)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rep.Proxied.Errors) > 0 {
		fmt.Fprintf(w, "proxied errors (first %d): %s\n", len(rep.Proxied.Errors), strings.Join(rep.Proxied.Errors, "; "))
	}
	if rep.Proxied.OK != rep.Proxied.N {
		return errors.New("some proxied requests failed")
	}
	return nil
}
