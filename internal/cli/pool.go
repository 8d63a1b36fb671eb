package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
	den "github.com/denhq/den/sdk/go"
)

// poolCmd is `den pool`: warm pools of ready, never-used sandboxes.
func (a *app) poolCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pool",
		Short: "Keep warm pools of ready sandboxes for instant creates",
		Long: "A warm pool keeps --size started, never-used sandboxes of one image (or snapshot) and size.\n" +
			"A create with that image (or snapshot) and size, or `den create --pool P`, claims one in\n" +
			"milliseconds instead of booting; the pool refills in the background. Every spare counts at\n" +
			"its memory limit against the node's memory.",
	}
	cmd.AddCommand(a.poolCreateCmd(), a.poolLsCmd(), a.poolGetCmd(), a.poolResizeCmd(), a.poolRmCmd())
	return cmd
}

func (a *app) poolCreateCmd() *cobra.Command {
	var req rest.CreatePoolRequest
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "create --image I | --snapshot S --size N",
		Short: "Create a warm pool and print its ID",
		Args:  argsBetween(0, 0, "no arguments (use --image or --snapshot)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (req.Image == "") == (req.Snapshot == "") {
				return fmt.Errorf("give exactly one of --image and --snapshot")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.CreatePool(cmd.Context(), req)
			if err != nil {
				return err
			}
			if wait > 0 {
				if p, err = a.waitPool(cmd, c, p.ID, wait); err != nil {
					return err
				}
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), p)
			}
			fmt.Fprintln(cmd.OutOrStdout(), p.ID)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&req.Name, "name", "", "name of the pool (unique among yours)")
	fs.StringVar(&req.Image, "image", "", "image of the spares")
	fs.StringVar(&req.Snapshot, "snapshot", "", "snapshot the spares are started from (ID or name); its size is theirs")
	fs.IntVar(&req.Size, "size", 1, fmt.Sprintf("spares to keep ready (0-%d)", rest.MaxPoolSize))
	fs.Float64Var(&req.CPUs, "cpus", 0, fmt.Sprintf("CPUs of each spare (default %g)", rest.DefaultCPUs))
	fs.Int64Var(&req.MemoryMB, "memory", 0, fmt.Sprintf("memory of each spare in MB (default %d)", rest.DefaultMemoryMB))
	fs.Int64Var(&req.DiskMB, "disk", 0, fmt.Sprintf("disk of each spare in MB (default %d)", rest.DefaultDiskMB))
	fs.StringVar(&req.User, "user", "", "default user of the spares (the image must have it)")
	fs.StringVar(&req.Runtime, "runtime", "", "runtime of the spares (see `den info`; default: the node's default)")
	fs.DurationVar(&wait, "wait", 0, "wait up to this long until every spare is ready (0: return at once)")
	return cmd
}

// waitPool waits until pool id is full, showing progress on stderr.
func (a *app) waitPool(cmd *cobra.Command, c *den.Client, id string, d time.Duration) (*rest.Pool, error) {
	last := -1
	return waitPoolFull(cmd.Context(), c, id, d, func(p *rest.Pool) {
		if p.Ready != last && !a.json {
			fmt.Fprintf(cmd.ErrOrStderr(), "pool %s: %d/%d ready\n", p.ID, p.Ready, p.Size)
			last = p.Ready
		}
	})
}

// waitPoolFull polls pool id until every spare is ready, calling progress
// (when not nil) with each reading; it fails after d naming what the pool
// waits for.
func waitPoolFull(ctx context.Context, c *den.Client, id string, d time.Duration, progress func(*rest.Pool)) (*rest.Pool, error) {
	deadline := time.Now().Add(d)
	for {
		p, err := c.GetPool(ctx, id)
		if err != nil {
			return nil, err
		}
		if progress != nil {
			progress(p)
		}
		if p.Ready >= p.Size {
			return p, nil
		}
		if time.Now().After(deadline) {
			why := "it is still filling"
			if p.Waiting != "" {
				why = p.Waiting
			}
			return nil, fmt.Errorf("pool %s has %d of %d spares ready after %s: %s", p.ID, p.Ready, p.Size, d, why)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (a *app) poolLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List warm pools",
		Args:    argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.ListPools(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), list)
			}
			return printPools(cmd.OutOrStdout(), list, time.Now())
		},
	}
}

func printPools(w io.Writer, list []rest.Pool, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSOURCE\tRUNTIME\tREADY\tCPUS\tMEMORY\tDISK\tAGE\tWAITING")
	for _, p := range list {
		src := p.Image
		if p.Snapshot != "" {
			src = "snapshot " + p.Snapshot
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%g\t%dMB\t%dMB\t%s\t%s\n", p.ID, orDash(p.Name), src, orDash(p.Runtime), p.Ready, p.Size,
			p.CPUs, p.MemoryMB, p.DiskMB, age(now.Sub(p.CreatedAt)), orDash(p.Waiting))
	}
	return tw.Flush()
}

func (a *app) poolGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get P",
		Short: "Show a warm pool",
		Args:  argsBetween(1, 1, "one pool ID or name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.GetPool(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), p)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			for _, kv := range [][2]string{{"id", p.ID}, {"name", orDash(p.Name)}, {"image", p.Image}, {"snapshot", orDash(p.Snapshot)},
				{"runtime", orDash(p.Runtime)}, {"ready", fmt.Sprintf("%d/%d", p.Ready, p.Size)}, {"waiting", orDash(p.Waiting)},
				{"cpus", strconv.FormatFloat(p.CPUs, 'g', -1, 64)}, {"memory", fmt.Sprintf("%dMB", p.MemoryMB)},
				{"disk", fmt.Sprintf("%dMB", p.DiskMB)}, {"user", orDash(p.User)}, {"created", p.CreatedAt.Format(time.RFC3339)}} {
				fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
			}
			return tw.Flush()
		},
	}
}

func (a *app) poolResizeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "resize P SIZE",
		Short: "Set the number of spares a warm pool keeps ready",
		Args:  argsBetween(2, 2, "a pool ID or name and a size"),
		RunE: func(cmd *cobra.Command, args []string) error {
			size, err := strconv.Atoi(args[1])
			if err != nil {
				return fmt.Errorf("size %q is not a whole number", args[1])
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.ResizePool(cmd.Context(), args[0], size)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), p)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d/%d ready\n", p.ID, p.Ready, p.Size)
			return nil
		},
	}
}

func (a *app) poolRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm P...",
		Aliases: []string{"delete"},
		Short:   "Delete warm pools and their spares",
		Args:    argsBetween(1, -1, "one or more pool IDs or names"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return deleteEach(cmd, args, "pools", c.DeletePool)
		},
	}
}
