package cli

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/denhq/den/api/rest"
)

// tenantCmd is `den tenant`: the teams sharing a den, their quotas and
// rate limits.
func (a *app) tenantCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tenant",
		Short: "Manage tenants: teams with their own sandboxes, keys, quotas and rate limits",
		Long: "A tenant owns sandboxes, snapshots, pools and keys that no other tenant can see.\n" +
			"Its quota bounds what it holds at once (sandboxes, vCPUs, memory, snapshots) and its rate\n" +
			"limit its API requests; going over either is HTTP 429. 0 means no limit. Creating, changing\n" +
			"and deleting tenants takes an admin key (den up's DEN_API_KEY is one).",
	}
	cmd.AddCommand(a.tenantCreateCmd(), a.tenantLsCmd(), a.tenantGetCmd(), a.tenantSetCmd(), a.tenantRmCmd())
	return cmd
}

// limitFlags are the flags of a tenant's quota and rate limit.
type limitFlags struct {
	q rest.Quota
	r rest.RateLimit
	p rest.Placement
}

func (l *limitFlags) add(fs *pflag.FlagSet) {
	fs.IntVar(&l.q.Sandboxes, "max-sandboxes", 0, "sandboxes held at once, suspended ones too (0: no limit)")
	fs.Float64Var(&l.q.VCPUs, "max-vcpus", 0, "vCPUs of running sandboxes (0: no limit)")
	fs.Int64Var(&l.q.MemoryMB, "max-memory", 0, "memory of running sandboxes, in MB (0: no limit)")
	fs.IntVar(&l.q.Snapshots, "max-snapshots", 0, "snapshot objects (0: no limit)")
	fs.Float64Var(&l.r.PerSecond, "rate", 0, "API requests per second, on average (0: no limit)")
	fs.IntVar(&l.r.Burst, "burst", 0, "API requests in a burst (0: --rate rounded up)")
	fs.StringSliceVar(&l.p.NodePools, "node-pools", nil, "the tenant's dedicated node pools, tried in order (\"\": none, the shared nodes)")
	fs.BoolVar(&l.p.OverflowToShared, "overflow-to-shared", false, "use the shared nodes when no dedicated pool has room")
}

// apply sets on q, r and p the flags the user gave.
func (l *limitFlags) apply(fs *pflag.FlagSet, q *rest.Quota, r *rest.RateLimit, p *rest.Placement) (quota, rate, placement bool) {
	set := func(name string) bool { return fs.Changed(name) }
	if set("max-sandboxes") {
		q.Sandboxes, quota = l.q.Sandboxes, true
	}
	if set("max-vcpus") {
		q.VCPUs, quota = l.q.VCPUs, true
	}
	if set("max-memory") {
		q.MemoryMB, quota = l.q.MemoryMB, true
	}
	if set("max-snapshots") {
		q.Snapshots, quota = l.q.Snapshots, true
	}
	if set("rate") {
		r.PerSecond, rate = l.r.PerSecond, true
	}
	if set("burst") {
		r.Burst, rate = l.r.Burst, true
	}
	if set("node-pools") {
		p.NodePools, placement = slices.DeleteFunc(slices.Clone(l.p.NodePools), func(s string) bool { return s == "" }), true
	}
	if set("overflow-to-shared") {
		p.OverflowToShared, placement = l.p.OverflowToShared, true
	}
	return quota, rate, placement
}

func (a *app) tenantCreateCmd() *cobra.Command {
	var l limitFlags
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a tenant (then give it a key: den key create --tenant NAME)",
		Args:  argsBetween(1, 1, "the tenant's name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			req := rest.CreateTenantRequest{Name: args[0], Quota: &rest.Quota{}, RateLimit: &rest.RateLimit{}, Placement: &rest.Placement{}}
			l.apply(cmd.Flags(), req.Quota, req.RateLimit, req.Placement)
			t, err := c.CreateTenant(cmd.Context(), req)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), t)
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Name)
			return nil
		},
	}
	l.add(cmd.Flags())
	return cmd
}

func (a *app) tenantSetCmd() *cobra.Command {
	var l limitFlags
	cmd := &cobra.Command{
		Use:   "set NAME [--max-... N] [--rate R --burst B] [--node-pools P,...] [--overflow-to-shared]",
		Short: "Change a tenant's quota, rate limit or placement; flags not given keep their value",
		Args:  argsBetween(1, 1, "the tenant's name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			cur, err := c.GetTenant(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			q, r, p := cur.Quota, cur.RateLimit, cur.Placement
			quota, rate, placement := l.apply(cmd.Flags(), &q, &r, &p)
			if !quota && !rate && !placement {
				return usagef(cmd, "nothing to change: give --max-sandboxes, --max-vcpus, --max-memory, --max-snapshots, --rate, --burst, --node-pools or --overflow-to-shared")
			}
			var req rest.UpdateTenantRequest
			if quota {
				req.Quota = &q
			}
			if rate {
				req.RateLimit = &r
			}
			if placement {
				req.Placement = &p
			}
			t, err := c.UpdateTenant(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), t)
			}
			return printTenants(cmd.OutOrStdout(), []rest.Tenant{*t})
		},
	}
	l.add(cmd.Flags())
	return cmd
}

func (a *app) tenantLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List tenants with their limits and usage (a non-admin key sees its own)",
		Args:    argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.ListTenants(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), list)
			}
			return printTenants(cmd.OutOrStdout(), list)
		},
	}
}

func (a *app) tenantGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a tenant's limits and usage",
		Args:  argsBetween(1, 1, "the tenant's name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			t, err := c.GetTenant(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), t)
			}
			return printTenants(cmd.OutOrStdout(), []rest.Tenant{*t})
		},
	}
}

func (a *app) tenantRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"delete"},
		Short:   "Delete a tenant that holds nothing, with its API keys",
		Args:    argsBetween(1, 1, "the tenant's name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return c.DeleteTenant(cmd.Context(), args[0])
		},
	}
}

// printTenants prints usage against limits: "used/limit", or the usage
// alone where there is no limit.
func printTenants(w io.Writer, list []rest.Tenant) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSANDBOXES\tVCPUS\tMEMORY\tSNAPSHOTS\tRATE\tNODE POOLS")
	for _, t := range list {
		rate := "-"
		if t.RateLimit.PerSecond > 0 {
			rate = fmt.Sprintf("%g/s burst %d", t.RateLimit.PerSecond, t.RateLimit.Burst)
		}
		pools := "shared"
		if len(t.Placement.NodePools) > 0 {
			pools = strings.Join(t.Placement.NodePools, ",")
			if t.Placement.OverflowToShared {
				pools += ",(shared)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name,
			usedOf(strconv.Itoa(t.Usage.Sandboxes), t.Quota.Sandboxes != 0, strconv.Itoa(t.Quota.Sandboxes)),
			usedOf(strconv.FormatFloat(t.Usage.VCPUs, 'g', -1, 64), t.Quota.VCPUs != 0, strconv.FormatFloat(t.Quota.VCPUs, 'g', -1, 64)),
			usedOf(fmt.Sprintf("%dMB", t.Usage.MemoryMB), t.Quota.MemoryMB != 0, fmt.Sprintf("%dMB", t.Quota.MemoryMB)),
			usedOf(strconv.Itoa(t.Usage.Snapshots), t.Quota.Snapshots != 0, strconv.Itoa(t.Quota.Snapshots)),
			rate, pools)
	}
	return tw.Flush()
}

func usedOf(used string, limited bool, limit string) string {
	if !limited {
		return used
	}
	return used + "/" + limit
}
