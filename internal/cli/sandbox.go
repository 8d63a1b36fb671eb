package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/denhq/den/api/rest"
	den "github.com/denhq/den/sdk/go"
)

// createFlags are the flags that size, label and time a new sandbox.
type createFlags struct {
	cpus                      float64
	memory, disk              int64
	env, meta                 []string
	name                      string
	timeout                   secondsFlag
	timeoutIsSet              func() bool
	timeoutAction, idleAction string
	idleTimeout, capacityWait secondsFlag
	snapshot, pool, runtime   string
	noInternet                bool
	allow, deny               []string
	publicPorts               []int
}

func (f *createFlags) register(fs *pflag.FlagSet) {
	fs.Float64Var(&f.cpus, "cpus", 0, fmt.Sprintf("CPUs (default %g)", rest.DefaultCPUs))
	fs.Int64Var(&f.memory, "memory", 0, fmt.Sprintf("memory in MB (default %d)", rest.DefaultMemoryMB))
	fs.Int64Var(&f.disk, "disk", 0, fmt.Sprintf("disk in MB (default %d)", rest.DefaultDiskMB))
	fs.StringArrayVar(&f.env, "env", nil, "environment variable KEY=VALUE of the sandbox (repeatable)")
	fs.StringArrayVar(&f.meta, "metadata", nil, "metadata KEY=VALUE (repeatable)")
	fs.StringVar(&f.name, "name", "", "name of the sandbox")
	fs.Var(&f.timeout, "timeout", fmt.Sprintf("running life (30m, or seconds), then --timeout-action; 0 = never (default %ds)", rest.DefaultTimeoutSeconds))
	fs.StringVar(&f.timeoutAction, "timeout-action", "", `what the timeout does: "kill" (default) or "suspend"`)
	fs.Var(&f.idleTimeout, "idle-timeout", `time without activity (10m, or seconds), then --idle-action; 0 = never (default)`)
	fs.StringVar(&f.idleAction, "idle-action", "", `what the idle timeout does: "kill" (default) or "suspend"`)
	fs.StringVar(&f.snapshot, "snapshot", "", "start from this snapshot (ID or name): it continues where the snapshot was; no IMAGE, --cpus, --memory, --disk or --env")
	fs.StringVar(&f.pool, "pool", "", "claim a ready sandbox from this warm pool (ID or name; see `den pool`); no IMAGE, --snapshot, --cpus, --memory or --disk")
	fs.StringVar(&f.runtime, "runtime", "", "runtime to run it on: gvisor or qemu (a microVM with its own Linux kernel); see `den info` (default: the server's)")
	fs.BoolVar(&f.noInternet, "no-internet", false, "no internet for the sandbox, but what --allow names")
	fs.StringArrayVar(&f.allow, "allow", nil, "let the sandbox reach only this IPv4 address, CIDR, domain or *.domain (repeatable; the internet is then off but for these)")
	fs.StringArrayVar(&f.deny, "deny", nil, "refuse this IPv4 address, CIDR, domain or *.domain (repeatable)")
	fs.IntSliceVar(&f.publicPorts, "public-port", nil, "make this port's URL public, no token needed (repeatable; 0: every port; see `den port`)")
	fs.Var(&f.capacityWait, "capacity-wait", "when a cluster's nodes are full, wait this long (30s, or seconds; at most 10m) for one with room, first come first placed; 0 = fail at once (default)")
	f.timeoutIsSet = func() bool { return fs.Changed("timeout") }
}

// secondsFlag is a whole number of seconds given as a Go duration ("10m",
// "90s") or a plain number of seconds ("600").
type secondsFlag int64

func (f *secondsFlag) String() string { return strconv.FormatInt(int64(*f), 10) }

func (f *secondsFlag) Type() string { return "duration" }

func (f *secondsFlag) Set(v string) error {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		*f = secondsFlag(n)
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d%time.Second != 0 {
		return fmt.Errorf("want whole seconds: a duration such as 90s or 10m, or a number of seconds")
	}
	*f = secondsFlag(d / time.Second)
	return nil
}

// request builds the create request for image.
func (f *createFlags) request(cmd *cobra.Command, image string) (rest.CreateSandboxRequest, error) {
	req := rest.CreateSandboxRequest{Image: image, Name: f.name, CPUs: f.cpus, MemoryMB: f.memory, DiskMB: f.disk,
		TimeoutAction: f.timeoutAction, IdleTimeout: int64(f.idleTimeout), IdleAction: f.idleAction, Snapshot: f.snapshot, Pool: f.pool, Runtime: f.runtime,
		PublicPorts: f.publicPorts, CapacityWait: int64(f.capacityWait)}
	if f.noInternet || len(f.allow) > 0 || len(f.deny) > 0 {
		on := !f.noInternet && len(f.allow) == 0 // --allow: only what it names
		req.Network = &rest.NetworkPolicy{Internet: &on, Allow: f.allow, Deny: f.deny}
	}
	var err error
	if req.Env, err = parsePairs(cmd, "--env", f.env); err != nil {
		return req, err
	}
	if req.Metadata, err = parsePairs(cmd, "--metadata", f.meta); err != nil {
		return req, err
	}
	if f.timeoutIsSet() {
		t := int64(f.timeout)
		req.Timeout = &t
	}
	return req, nil
}

// parsePairs parses KEY=VALUE flag values; nil when there are none.
func parsePairs(cmd *cobra.Command, flag string, vals []string) (map[string]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(vals))
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return nil, usagef(cmd, "invalid %s %q: want KEY=VALUE", flag, v)
		}
		m[k] = val
	}
	return m, nil
}

func (a *app) createCmd() *cobra.Command {
	var f createFlags
	cmd := &cobra.Command{
		Use:   "create [IMAGE]",
		Short: "Create a sandbox and print its ID",
		Args:  argsBetween(0, 1, "at most one IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := f.request(cmd, firstOr(args, ""))
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			sb, err := c.Create(cmd.Context(), req)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), sb.Sandbox)
			}
			fmt.Fprintln(cmd.OutOrStdout(), sb.ID)
			return nil
		},
	}
	f.register(cmd.Flags())
	return cmd
}

func firstOr(args []string, def string) string {
	if len(args) > 0 {
		return args[0]
	}
	return def
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (a *app) lsCmd() *cobra.Command {
	var state string
	var meta []string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List sandboxes",
		Args:    argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			md, err := parsePairs(cmd, "--metadata", meta)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			list := []rest.Sandbox{}
			for sb, err := range c.All(cmd.Context(), den.ListOptions{State: state, Metadata: md}) {
				if err != nil {
					return err
				}
				list = append(list, sb)
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), rest.SandboxList{Sandboxes: list})
			}
			return printSandboxes(cmd.OutOrStdout(), list, time.Now())
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only sandboxes in this state (running, suspended, ...)")
	cmd.Flags().StringArrayVar(&meta, "metadata", nil, "only sandboxes with metadata KEY=VALUE (repeatable)")
	return cmd
}

// printSandboxes writes the sandboxes as a table.
func printSandboxes(w io.Writer, list []rest.Sandbox, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tIMAGE\tSTATE\tRUNTIME\tCPUS\tMEM\tAGE")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%g\t%dM\t%s\n", s.ID, orDash(s.Name), s.Image, s.State, orDash(s.Runtime),
			s.CPUs, s.MemoryMB, age(now.Sub(s.CreatedAt)))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age renders a duration the way ls-like tables do: 45s, 12m, 3h, 2d.
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", max(0, int(d.Seconds())))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func (a *app) getCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show a sandbox",
		Args:  argsBetween(1, 1, "one sandbox ID or name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			sb, err := c.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), sb.Sandbox)
			}
			return printSandbox(cmd.OutOrStdout(), sb.Sandbox, time.Now())
		},
	}
}

// printSandbox writes one sandbox as "key: value" lines; now dates the
// relative times.
func printSandbox(w io.Writer, s rest.Sandbox, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("ID", s.ID)
	row("Name", orDash(s.Name))
	row("Image", s.Image)
	row("State", s.State)
	if s.Reason != "" {
		row("Reason", s.Reason)
	}
	row("Runtime", s.Runtime)
	row("Node", s.Node)
	row("CPUs", fmt.Sprintf("%g", s.CPUs))
	row("Memory", fmt.Sprintf("%d MB", s.MemoryMB))
	row("Disk", fmt.Sprintf("%d MB", s.DiskMB))
	row("Created", s.CreatedAt.Local().Format(time.RFC3339))
	printTimers(row, s, now)
	if s.SnapshotBytes > 0 {
		row("Snapshot", bytesHuman(s.SnapshotBytes))
	}
	for _, k := range slices.Sorted(maps.Keys(s.Metadata)) {
		row("Metadata", k+"="+s.Metadata[k])
	}
	return tw.Flush()
}

// printTimers writes the timeout and idle timeout of s, and when a
// suspended s was suspended.
func printTimers(row func(k, v string), s rest.Sandbox, now time.Time) {
	at := func(t time.Time) string {
		if d := t.Sub(now); d >= 0 {
			return t.Local().Format(time.RFC3339) + " (in " + seconds(d) + ")"
		}
		return t.Local().Format(time.RFC3339) + " (" + seconds(now.Sub(t)) + " ago)"
	}
	if s.SuspendedAt != nil {
		row("Suspended", at(*s.SuspendedAt))
	}
	if s.Timeout > 0 {
		row("Timeout", seconds(time.Duration(s.Timeout)*time.Second)+", then "+s.TimeoutAction)
	}
	if s.ExpiresAt != nil {
		row("Expires", at(*s.ExpiresAt))
	}
	if s.TimeoutLeft > 0 {
		row("Timeout left", seconds(time.Duration(s.TimeoutLeft)*time.Second)+" of running time (stopped while suspended)")
	}
	if s.IdleTimeout > 0 {
		row("Idle timeout", seconds(time.Duration(s.IdleTimeout)*time.Second)+", then "+s.IdleAction)
	}
	if s.LastActiveAt != nil {
		row("Last active", at(*s.LastActiveAt))
	}
	if s.IdleExpiresAt != nil {
		row("Idle expires", at(*s.IdleExpiresAt))
	}
}

// seconds renders a duration to the second: 45s, 10m0s, 2h3m4s.
func seconds(d time.Duration) string { return d.Round(time.Second).String() }

func (a *app) suspendCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "suspend ID",
		Short: "Suspend a sandbox: save its memory, processes and files, and stop it",
		Long: "Suspend saves the whole state of a running sandbox to disk and stops it, freeing its CPU and\n" +
			"memory; its timers stop too. `den resume`, or any exec or file call, brings it back as it was.",
		Args: argsBetween(1, 1, "one sandbox ID or name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.lifecycle(cmd, args[0], (*den.Client).Suspend)
		},
	}
}

func (a *app) resumeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "resume ID",
		Short: "Resume a suspended sandbox",
		Args:  argsBetween(1, 1, "one sandbox ID or name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.lifecycle(cmd, args[0], (*den.Client).Resume)
		},
	}
}

// lifecycle runs a suspend or resume of id and prints the sandbox's ID
// (the sandbox with --json).
func (a *app) lifecycle(cmd *cobra.Command, id string, call func(*den.Client, context.Context, string) (*den.Sandbox, error)) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	sb, err := call(c, cmd.Context(), id)
	if err != nil {
		return err
	}
	if a.json {
		return printJSON(cmd.OutOrStdout(), sb.Sandbox)
	}
	fmt.Fprintln(cmd.OutOrStdout(), sb.ID)
	return nil
}

func (a *app) rmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm ID...",
		Aliases: []string{"delete"},
		Short:   "Delete sandboxes",
		Args:    argsBetween(1, -1, "one or more sandbox IDs"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return deleteEach(cmd, args, "sandboxes", c.Delete)
		},
	}
}

// deleteEach deletes every ID in ids with del, printing each one deleted
// and reporting each failure; it fails when any did ("N of M <noun> not
// deleted").
func deleteEach(cmd *cobra.Command, ids []string, noun string, del func(ctx context.Context, id string) error) error {
	failed := 0
	for _, id := range ids {
		if err := del(cmd.Context(), id); err != nil {
			failed++
			report(cmd.ErrOrStderr(), err)
			continue
		}
		fmt.Fprintln(cmd.OutOrStdout(), id)
	}
	if failed > 0 {
		return &ExitError{Code: 1, Message: fmt.Sprintf("%d of %d %s not deleted", failed, len(ids), noun)}
	}
	return nil
}
