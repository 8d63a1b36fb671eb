package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
)

// snapshotCmd is `den snapshot`: saved sandboxes as objects of their own.
func (a *app) snapshotCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save running sandboxes as snapshots, list and remove them",
		Long: "A snapshot holds a running sandbox's memory, processes and files (--mode filesystem: its files\n" +
			"only); the sandbox keeps running. It outlives the sandbox: `den create --snapshot S` starts new\n" +
			"sandboxes that continue from it (mode filesystem: that boot cold on its files).",
	}
	cmd.AddCommand(a.snapshotCreateCmd(), a.snapshotLsCmd(), a.snapshotGetCmd(), a.snapshotRmCmd())
	cmd.AddCommand(a.snapshotUsageCmd())
	cmd.AddCommand(a.snapshotPruneCmd())
	return cmd
}

func (a *app) snapshotCreateCmd() *cobra.Command {
	var req rest.CreateSnapshotRequest
	cmd := &cobra.Command{
		Use:   "create ID",
		Short: "Snapshot a running sandbox and print the snapshot's ID",
		Args:  argsBetween(1, 1, "one sandbox ID or name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			req.Sandbox = args[0]
			s, err := c.CreateSnapshot(cmd.Context(), req)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), s)
			}
			fmt.Fprintln(cmd.OutOrStdout(), s.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&req.Name, "name", "", "name of the snapshot (unique among yours)")
	cmd.Flags().StringVar(&req.Mode, "mode", "", `"memory" (default: memory, processes and files; new sandboxes continue from it) or "filesystem" (files only; new sandboxes boot cold on them)`)
	return cmd
}

func (a *app) snapshotLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List snapshots",
		Args:    argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.ListSnapshots(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), list)
			}
			return printSnapshots(cmd.OutOrStdout(), list, time.Now())
		},
	}
}

func printSnapshots(w io.Writer, list []rest.Snapshot, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSANDBOX\tIMAGE\tMODE\tSIZE\tAGE")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, orDash(s.Name), s.Sandbox, s.Image, s.Mode, mib(s.SizeBytes), age(now.Sub(s.CreatedAt)))
	}
	return tw.Flush()
}

func mib(n int64) string { return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20)) }

func (a *app) snapshotGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get S",
		Short: "Show a snapshot",
		Args:  argsBetween(1, 1, "one snapshot ID or name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			s, err := c.GetSnapshot(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), s)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			for _, kv := range [][2]string{{"id", s.ID}, {"name", orDash(s.Name)}, {"sandbox", s.Sandbox}, {"image", s.Image},
				{"mode", s.Mode}, {"size", mib(s.SizeBytes)}, {"created", s.CreatedAt.Format(time.RFC3339)}} {
				fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
			}
			return tw.Flush()
		},
	}
}

func (a *app) snapshotRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm S...",
		Aliases: []string{"delete"},
		Short:   "Delete snapshots",
		Args:    argsBetween(1, -1, "one or more snapshot IDs or names"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return deleteEach(cmd, args, "snapshots", c.DeleteSnapshot)
		},
	}
}

// forkCmd is `den fork ID --count N`.
func (a *app) forkCmd() *cobra.Command {
	var req rest.ForkRequest
	cmd := &cobra.Command{
		Use:   "fork ID",
		Short: "Start copies of a running sandbox and print their IDs",
		Long: "Fork checkpoints a running sandbox once (it keeps running) and starts --count copies, each a\n" +
			"new sandbox whose processes continue from that point and whose writes are its own.",
		Args: argsBetween(1, 1, "one sandbox ID or name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.Fork(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			if a.json {
				out := make([]rest.Sandbox, 0, len(list))
				for _, sb := range list {
					out = append(out, sb.Sandbox)
				}
				return printJSON(cmd.OutOrStdout(), out)
			}
			for _, sb := range list {
				fmt.Fprintln(cmd.OutOrStdout(), sb.ID)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&req.Count, "count", 1, fmt.Sprintf("number of copies (1-%d)", rest.MaxForkCount))
	cmd.Flags().StringVar(&req.SnapshotName, "keep-snapshot", "", "keep the checkpoint as a snapshot of this name")
	return cmd
}
