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
	cmd.AddCommand(a.nodeLsCmd())
	return cmd
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
func printNodes(w io.Writer, nodes []rest.Node) error {
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
