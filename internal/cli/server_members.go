package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
)

// serverMembersCmd is `den server members`; NewRoot adds it under the
// process command `server` (package daemon), which owns `den server`.
func (a *app) serverMembersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the den servers of the cluster: ID, address, leader or follower, voter, last contact",
		Long: `List the den servers of the raft cluster as the server at --url (DEN_URL)
sees them. LAST CONTACT is how long ago that server last heard from each
member over raft. Needs an admin API key.`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.ClusterMembers(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), list)
			}
			return printMembers(cmd.OutOrStdout(), list.Members)
		},
	}
}

// printMembers prints a member per line.
func printMembers(w io.Writer, ms []rest.ClusterMember) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tROLE\tVOTER\tLAST CONTACT")
	for _, m := range ms {
		contact := "never"
		if m.LastContactMs != nil {
			contact = (time.Duration(*m.LastContactMs) * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\n", m.ID, m.Address, m.Role, m.Voter, contact)
	}
	return tw.Flush()
}
