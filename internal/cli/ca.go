package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
	den "github.com/denhq/den/sdk/go"
)

// caCmd is `den ca`: the cluster CA of den server, and its rotation.
func (a *app) caCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Show or rotate the cluster CA (den server)",
		Long: `The cluster CA signs the certificates with which den servers and agents
authenticate each other. A rotation replaces it without a break: first every
server and connected agent trusts a new CA beside the old, then the new one
signs (each server and agent gets a new certificate), then the old one is
dropped. The leader takes each step once every server and every agent that is
up has taken the one before; an agent that is down meanwhile joins again with a
token. The leader begins a rotation by itself when the CA has a third of its
life left. Needs an admin API key.`,
	}
	cmd.AddCommand(a.caStatusCmd(), a.caRotateCmd())
	return cmd
}

func (a *app) caStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the cluster CA and where a rotation of it stands",
		Args:  argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			st, err := c.ClusterCA(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), st)
			}
			return printCA(cmd.OutOrStdout(), st)
		},
	}
}

func (a *app) caRotateCmd() *cobra.Command {
	var abort, wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Begin a rotation of the cluster CA (--abort drops one whose new CA does not sign yet)",
		Long: `Begin a rotation of the cluster CA; the leader takes its steps in the
background (den ca status shows what each waits for). --wait follows it to the
end. Join tokens made before the new CA signs stop working then: create new
ones. --abort drops a rotation whose new CA does not sign yet.`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			action := rest.CARotateBegin
			if abort {
				action = rest.CARotateAbort
			}
			st, err := c.RotateClusterCA(cmd.Context(), action)
			if err != nil {
				return err
			}
			if wait && !abort {
				st, err = waitRotation(cmd.Context(), c, cmd.ErrOrStderr(), timeout)
				if err != nil {
					return err
				}
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), st)
			}
			return printCA(cmd.OutOrStdout(), st)
		},
	}
	cmd.Flags().BoolVar(&abort, "abort", false, "abort the rotation under way (only before its new CA signs)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the rotation has finished, showing each step")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "with --wait, how long to wait")
	return cmd
}

// waitRotation polls until the rotation is back in phase stable and every
// server and node dropped the old CA, writing
// a line to progress whenever the phase or what it waits for changes.
func waitRotation(ctx context.Context, c *den.Client, progress io.Writer, timeout time.Duration) (*rest.ClusterCA, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := ""
	for {
		st, err := c.ClusterCA(ctx)
		if err != nil {
			return nil, err
		}
		line := fmt.Sprintf("phase %s, waiting for %d servers and %d nodes", st.Phase, len(st.WaitingServers), len(st.WaitingNodes))
		if line != last {
			fmt.Fprintln(progress, line)
			last = line
		}
		if st.Phase == "stable" && len(st.WaitingServers) == 0 && len(st.WaitingNodes) == 0 {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the rotation did not finish within %s (phase %s, waiting for servers [%s] and nodes [%s]): see den ca status, and --timeout",
				timeout, st.Phase, strings.Join(st.WaitingServers, " "), strings.Join(st.WaitingNodes, " "))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func printCA(w io.Writer, st *rest.ClusterCA) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PHASE\t%s (generation %d)\n", st.Phase, st.Generation)
	fmt.Fprintf(tw, "SIGNER\t%s (valid until %s)\n", st.Signer.Hash, st.Signer.ExpiresAt)
	if st.Next != nil {
		fmt.Fprintf(tw, "NEXT\t%s (trusted, not yet signing)\n", st.Next.Hash)
	}
	if st.Previous != nil {
		fmt.Fprintf(tw, "PREVIOUS\t%s (trusted until every certificate is signed again)\n", st.Previous.Hash)
	}
	if st.RotationStartedAt != "" {
		fmt.Fprintf(tw, "STARTED\t%s\n", st.RotationStartedAt)
	}
	if st.RotatedAt != "" {
		fmt.Fprintf(tw, "LAST ROTATED\t%s\n", st.RotatedAt)
	}
	if st.Phase != "stable" || len(st.WaitingServers)+len(st.WaitingNodes) > 0 {
		fmt.Fprintf(tw, "WAITING SERVERS\t%s\n", orNone(st.WaitingServers))
		fmt.Fprintf(tw, "WAITING NODES\t%s\n", orNone(st.WaitingNodes))
	}
	return tw.Flush()
}

func orNone(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, " ")
}
