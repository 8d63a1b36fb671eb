package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
)

// `den snapshot usage` and `den snapshot prune`: the disk snapshots take
// on the node, and the removal of what nothing references.

func (a *app) snapshotUsageCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "usage",
		Short: "Show the disk your snapshots take, and the node's totals",
		Long: "Lists your sandboxes' suspend snapshots and your snapshot objects with their size on the\n" +
			"node, then the node's totals: everything in its snapshot directory, and what no record names.",
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			u, err := c.SnapshotUsage(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), u)
			}
			return printSnapshotUsage(cmd.OutOrStdout(), *u, time.Now())
		},
	}
}

func printSnapshotUsage(w io.Writer, u rest.SnapshotUsage, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(u.Sandboxes) > 0 {
		fmt.Fprintln(tw, "SANDBOX\tNAME\tSTATE\tPINNED\tGENERATIONS\tPENDING\tSIZE")
		for _, s := range u.Sandboxes {
			pinned := "-"
			if s.PinnedGeneration != 0 {
				pinned = fmt.Sprint(s.PinnedGeneration)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", s.ID, orDash(s.Name), s.State, pinned, s.Generations, s.Pending, bytesHuman(s.Bytes))
		}
		fmt.Fprintln(tw)
	}
	if len(u.Objects) > 0 {
		fmt.Fprintln(tw, "SNAPSHOT\tNAME\tSIZE\tAGE")
		for _, o := range u.Objects {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.ID, orDash(o.Name), bytesHuman(o.Bytes), age(now.Sub(o.CreatedAt)))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "yours: %s in %d sandboxes and %d snapshots\n", bytesHuman(u.TenantBytes), len(u.Sandboxes), len(u.Objects))
	fmt.Fprintf(w, "node %s: %s in %d files, %s of it named by no record\n", u.Node, bytesHuman(u.NodeBytes), u.NodeFiles, bytesHuman(u.OrphanBytes))
	return nil
}

// snapshotPruneConfig is the configuration of `den snapshot prune`.
type snapshotPruneConfig struct {
	dryRun       bool
	objects      bool
	olderThan    time.Duration
	includeNamed bool
}

func (a *app) snapshotPruneCmd() *cobra.Command {
	var cfg snapshotPruneConfig
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove snapshot files nothing references",
		Long: "Removes the older and unsealed suspend generations of your running and suspended sandboxes\n" +
			"(never the one a sandbox would resume from) and, with an admin key, the directories no\n" +
			"record names. Snapshot objects are yours to keep: they go only with --objects and\n" +
			"--older-than (unnamed ones, unless --include-named).",
		Example: "  den snapshot prune --dry-run\n  den snapshot prune --objects --older-than 24h",
		Args:    argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := cfg.request(cmd)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.PruneSnapshots(cmd.Context(), req)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), res)
			}
			return printPruned(cmd.OutOrStdout(), *res)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&cfg.dryRun, "dry-run", false, "show what would be removed; remove nothing")
	f.BoolVar(&cfg.objects, "objects", false, "also delete your snapshot objects older than --older-than")
	f.DurationVar(&cfg.olderThan, "older-than", 0, "with --objects: the age a snapshot object must have (e.g. 24h; 0s for all)")
	f.BoolVar(&cfg.includeNamed, "include-named", false, "with --objects: named snapshot objects too")
	return cmd
}

// request checks the flags and builds the API request.
func (cfg snapshotPruneConfig) request(cmd *cobra.Command) (rest.PruneSnapshotsRequest, error) {
	req := rest.PruneSnapshotsRequest{DryRun: cfg.dryRun, Objects: cfg.objects, IncludeNamed: cfg.includeNamed}
	olderSet := cmd.Flags().Changed("older-than")
	switch {
	case !cfg.objects && (olderSet || cfg.includeNamed):
		return req, usagef(cmd, "--older-than and --include-named apply to snapshot objects: add --objects")
	case cfg.objects && !olderSet:
		return req, usagef(cmd, "--objects needs --older-than (e.g. 24h, or 0s for all): snapshot objects are your data")
	case cfg.olderThan < 0:
		return req, usagef(cmd, "--older-than must be >= 0, got %s", cfg.olderThan)
	}
	if cfg.objects {
		sec := int64(cfg.olderThan / time.Second)
		req.OlderThanSec = &sec
	}
	return req, nil
}

func printPruned(w io.Writer, res rest.PruneSnapshotsResult) error {
	verb, total := "removed", "freed"
	if res.DryRun {
		verb, total = "would remove", "would free"
	}
	items := slices.Clone(res.Removed)
	slices.SortStableFunc(items, func(x, y rest.PrunedSnapshot) int {
		return strings.Compare(x.Sandbox+x.Snapshot, y.Sandbox+y.Snapshot)
	})
	for _, it := range items {
		what := "sandbox " + it.Sandbox
		if it.Snapshot != "" {
			what = "snapshot " + it.Snapshot
		}
		if it.Generation != 0 && it.Kind != rest.SnapshotKindObject {
			what += fmt.Sprintf(" generation %d", it.Generation)
		}
		fmt.Fprintf(w, "%s %s (%s, %s): %s\n", verb, what, it.Kind, bytesHuman(it.Bytes), it.Reason)
	}
	_, err := fmt.Fprintf(w, "%s %s in %d directories\n", total, bytesHuman(res.Bytes), len(res.Removed))
	return err
}
