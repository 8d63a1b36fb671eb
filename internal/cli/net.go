package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
)

func (a *app) netCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "net",
		Short: "Show or change a sandbox's network policy (what it may reach)",
	}
	cmd.AddCommand(a.netGetCmd(), a.netSetCmd())
	return cmd
}

func (a *app) netGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show a sandbox's network policy",
		Args:  argsBetween(1, 1, "one sandbox ID or name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.Network(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), p)
			}
			printNetwork(cmd.OutOrStdout(), p)
			return nil
		},
	}
}

func (a *app) netSetCmd() *cobra.Command {
	var internet bool
	var allow, deny []string
	cmd := &cobra.Command{
		Use:   "set ID [--internet=true|false] [--allow RULE]... [--deny RULE]...",
		Short: "Change a sandbox's network policy; it applies at once",
		Long: `Change what a sandbox may reach. A RULE is an IPv4 address or CIDR, a domain
(example.com: that name) or *.domain (its subdomains). Flags you give replace
those parts of the policy; --allow "" or --deny "" clears a list. Allow
rules win over deny rules; --allow without --internet=true also turns the
internet off, so that only what it names answers. Names are checked by
den's DNS resolver: a name the policy refuses does not resolve. den's own addresses, the host,
link-local (cloud metadata) and private ranges are refused unless a CIDR
rule allows them.`,
		Args: argsBetween(1, 1, "one sandbox ID or name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.Network(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("internet") {
				p.Internet = &internet
			}
			if cmd.Flags().Changed("allow") {
				p.Allow = nonEmpty(allow)
				if len(p.Allow) > 0 && !cmd.Flags().Changed("internet") {
					off := false // --allow alone: only what it names
					p.Internet = &off
				}
			}
			if cmd.Flags().Changed("deny") {
				p.Deny = nonEmpty(deny)
			}
			out, err := c.SetNetwork(cmd.Context(), args[0], *p)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), out)
			}
			printNetwork(cmd.OutOrStdout(), out)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&internet, "internet", true, "reach the internet (what no rule names)")
	fs.StringArrayVar(&allow, "allow", nil, "allow rule (repeatable; replaces the allow list)")
	fs.StringArrayVar(&deny, "deny", nil, "deny rule (repeatable; replaces the deny list)")
	return cmd
}

// nonEmpty drops empty rules (--allow "" clears the list).
func nonEmpty(rules []string) []string {
	var out []string
	for _, r := range rules {
		if r != "" {
			out = append(out, r)
		}
	}
	return out
}

func printNetwork(w io.Writer, p *rest.NetworkPolicy) {
	internet := "on"
	if !p.InternetOn() {
		internet = "off"
	}
	fmt.Fprintf(w, "internet  %s\nallow     %s\ndeny      %s\n", internet, orDash(strings.Join(p.Allow, " ")), orDash(strings.Join(p.Deny, " ")))
}
