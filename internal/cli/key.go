package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
)

// keyCmd is `den key`: API keys.
func (a *app) keyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Manage API keys (shown once at creation, stored hashed)",
	}
	cmd.AddCommand(a.keyCreateCmd(), a.keyLsCmd(), a.keyRevokeCmd())
	return cmd
}

func (a *app) keyCreateCmd() *cobra.Command {
	var req rest.CreateAPIKeyRequest
	var e2b bool
	cmd := &cobra.Command{
		Use:   "create [--name N] [--tenant T] [--admin] [--e2b]",
		Short: "Create an API key and print its secret (the only time it is shown)",
		Args:  argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if e2b {
				req.Format = rest.KeyFormatE2B
			}
			out, err := c.CreateAPIKey(cmd.Context(), req)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprintln(cmd.OutOrStdout(), out.Secret)
			if isTerminal(cmd.ErrOrStderr()) {
				fmt.Fprintf(cmd.ErrOrStderr(), "key %s of tenant %s: store the secret now, den keeps only its hash\n", out.Key.ID, out.Key.Tenant)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&req.Name, "name", "", "name of the key, to recognise and revoke it")
	fs.StringVar(&req.Tenant, "tenant", "", "tenant of the key (default: yours; another takes an admin key)")
	fs.BoolVar(&req.Admin, "admin", false, "an admin key: also manages images, tenants and every tenant's keys")
	fs.BoolVar(&e2b, "e2b", false, "an E2B-format key (e2b_...), for E2B_API_KEY of the e2b SDKs")
	return cmd
}

func (a *app) keyLsCmd() *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List API keys (never their secrets)",
		Args:    argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.ListAPIKeys(cmd.Context(), tenant)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), list)
			}
			return printKeys(cmd.OutOrStdout(), list, time.Now())
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "list another tenant's keys (admin keys only)")
	return cmd
}

func (a *app) keyRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "revoke ID|NAME",
		Aliases: []string{"rm"},
		Short:   "Revoke an API key: it stops working at once",
		Args:    argsBetween(1, 1, "the key's ID or name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return c.RevokeAPIKey(cmd.Context(), args[0])
		},
	}
}

func printKeys(w io.Writer, list []rest.APIKey, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tTENANT\tADMIN\tAGE\t")
	for _, k := range list {
		cur := ""
		if k.Current {
			cur = "(this key)"
		}
		admin := "no"
		if k.Admin {
			admin = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, orDash(k.Name), k.Tenant, admin, age(now.Sub(k.CreatedAt)), cur)
	}
	return tw.Flush()
}
