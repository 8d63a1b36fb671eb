package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
)

func (a *app) nodeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Show the nodes that run sandboxes",
	}
	cmd.AddCommand(a.nodeLsCmd(), a.nodeDrainCmd(true), a.nodeDrainCmd(false))
	return cmd
}

// nodeDrainCmd is `den node drain` (drain) or `den node undrain`.
func (a *app) nodeDrainCmd(drain bool) *cobra.Command {
	use, short := "drain ID", "Mark a cluster node draining: new sandboxes go elsewhere, those it runs stay"
	if !drain {
		use, short = "undrain ID", "Clear a node's draining mark: it takes new sandboxes again"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  argsBetween(1, 1, "the node's ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			n, err := c.DrainNode(cmd.Context(), args[0], drain)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), n)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", n.ID, n.State)
			return nil
		},
	}
}

func (a *app) nodeLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List nodes with their runtimes (and the acceleration each uses), CPUs, memory and running sandboxes",
		Args:  argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			nodes, err := c.ListNodes(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), rest.NodeList{Nodes: nodes})
			}
			return printNodes(cmd.OutOrStdout(), nodes)
		},
	}
}

// printNodes prints a node per line; its runtimes the default first.
// Nodes of a cluster get the cluster's columns.
func printNodes(w io.Writer, nodes []rest.Node) error {
	if len(nodes) > 0 && nodes[0].Cluster != nil {
		return printClusterNodes(w, nodes)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tRUNTIMES\tCPUS\tMEMORY\tAVAILABLE\tSANDBOXES\tVERSION")
	for _, n := range nodes {
		var rts []string
		for _, r := range n.Runtimes {
			name := r.Name
			if r.Accel != "" {
				name += " (" + r.Accel + ")"
			}
			rts = append(rts, name)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%dMB\t%dMB\t%d\t%s\n", n.ID, n.State, strings.Join(rts, ", "), n.CPUs, n.MemoryMB, n.MemoryAvailableMB, n.Sandboxes, n.Version)
	}
	return tw.Flush()
}

// printClusterNodes prints the nodes of a cluster, a node per line.
func printClusterNodes(w io.Writer, nodes []rest.Node) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSTATE\tPOOL\tCPUS\tMEMORY\tSANDBOXES\tSERVER\tLABELS\tVERSION")
	for _, n := range nodes {
		c := n.Cluster
		if c == nil {
			c = &rest.NodeDetail{CPUs: float64(n.CPUs)}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%g\t%dMB\t%d\t%s\t%s\t%s\n", n.ID, orDash(c.Name), n.State, orDash(c.Pool),
			c.CPUs, n.MemoryMB, n.Sandboxes, orDash(c.Server), labelString(c.Labels), orDash(n.Version))
	}
	return tw.Flush()
}
