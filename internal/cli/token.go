package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/nodeproto"
)

// tokenCmd is `den token`: join tokens for den agent.
func (a *app) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage join tokens: what den agent presents to join the cluster",
		Long: "A join token admits a number of den agents (--uses) until it expires (--ttl); each\n" +
			"becomes a node with a certificate of the cluster CA and needs the token no more. The\n" +
			"token carries the CA's hash, so an agent checks the server before it trusts it. The\n" +
			"server keeps only a hash of the secret: copy the token when it is printed. Admin keys only.",
	}
	cmd.AddCommand(a.tokenCreateCmd(), a.tokenLsCmd(), a.tokenRmCmd())
	return cmd
}

func (a *app) tokenCreateCmd() *cobra.Command {
	var ttl time.Duration
	var uses int
	var pool, labels string
	var server bool
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a join token and print it (den agent --token TOKEN, or with --server den server --token TOKEN)",
		Args:  argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ttl < 0 || ttl%time.Second != 0 {
				return usagef(cmd, "--ttl %s: give whole seconds, or 0 for a token that never expires", ttl)
			}
			lbl, err := nodeproto.ParseLabels(labels)
			if err != nil {
				return usagef(cmd, "--labels: %v", err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			sec := int64(ttl / time.Second)
			req := rest.CreateJoinTokenRequest{TTLSec: &sec, Uses: uses, Pool: pool, Labels: lbl}
			if server {
				if pool != "" || labels != "" {
					return usagef(cmd, "--server: a server token takes no --pool or --labels")
				}
				req.Role = rest.TokenRoleServer
			}
			t, err := c.CreateJoinToken(cmd.Context(), req)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), t)
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&ttl, "ttl", time.Hour, "how long the token admits nodes (0: forever)")
	f.IntVar(&uses, "uses", 1, "how many nodes it admits")
	f.StringVar(&pool, "pool", "", "pool of the nodes it admits (default: the shared pool, or the agent's --pool)")
	f.StringVar(&labels, "labels", "", "labels of the nodes it admits, key=value[,key=value...]; they win over the agent's")
	f.BoolVar(&server, "server", false, "admit servers instead of agents: den server --join ADDR --token TOKEN, with no copy of the CA directory")
	return cmd
}

func (a *app) tokenLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List join tokens (without their secrets)",
		Args:    argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.ListJoinTokens(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), rest.JoinTokenList{Tokens: list})
			}
			return printTokens(cmd.OutOrStdout(), list)
		},
	}
}

func (a *app) tokenRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm ID",
		Aliases: []string{"delete"},
		Short:   "Delete a join token (the nodes it admitted stay)",
		Args:    argsBetween(1, 1, "the token's ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return c.DeleteJoinToken(cmd.Context(), args[0])
		},
	}
}

// printTokens prints a token per line.
func printTokens(w io.Writer, list []rest.JoinToken) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADMITS\tUSED\tPOOL\tLABELS\tEXPIRES")
	for _, t := range list {
		exp := "never"
		if t.ExpiresAt != nil {
			exp = t.ExpiresAt.UTC().Format(time.RFC3339)
		}
		admits := "agents"
		if t.Role == rest.TokenRoleServer {
			admits = "servers"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\n", t.ID, admits, t.Used, t.Uses, orDash(t.Pool), labelString(t.Labels), exp)
	}
	return tw.Flush()
}

// labelString is labels as k=v,k2=v2, sorted; "-" when none.
func labelString(labels map[string]string) string {
	if len(labels) == 0 {
		return "-"
	}
	kv := make([]string, 0, len(labels))
	for k, v := range labels {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}
