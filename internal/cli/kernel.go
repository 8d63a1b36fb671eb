package cli

import (
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/denhq/den/internal/vmkernel"
	den "github.com/denhq/den/sdk/go"
)

// kernelCmd is `den kernel`: the guest kernels of microVM sandboxes, kept
// in the local data directory (<data-dir>/kernels).
func (a *app) kernelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kernel",
		Short: "Fetch and list the guest kernels of microVM sandboxes",
		Long: "MicroVM sandboxes boot a Debian cloud kernel that den fetches with apt (downloaded and\n" +
			"unpacked into <data-dir>/kernels, never installed on the host), with the modules a guest\n" +
			"needs and an initramfs whose init is den's guest agent.",
	}
	cmd.AddCommand(a.kernelFetchCmd(), a.kernelLsCmd())
	return cmd
}

// kernels opens the kernel store of the data directory.
func (a *app) kernels() (*vmkernel.Store, error) {
	dir := a.dataDir
	if dir == "" {
		dir = den.DefaultDataDir()
	}
	return vmkernel.Open(filepath.Join(dir, "kernels"))
}

func (a *app) kernelFetchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "fetch [PACKAGE]",
		Short: "Fetch a guest kernel (default: the newest " + vmkernel.DefaultPackage + ")",
		Args:  argsBetween(0, 1, "at most one Debian kernel package"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.kernels()
			if err != nil {
				return err
			}
			progress := cmd.ErrOrStderr()
			k, err := s.Fetch(cmd.Context(), firstOr(args, ""), progress)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), k)
			}
			fmt.Fprintln(cmd.OutOrStdout(), k.Version)
			return nil
		},
	}
}

func (a *app) kernelLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the fetched guest kernels",
		Args:    argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := a.kernels()
			if err != nil {
				return err
			}
			list, err := s.List()
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), list)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tPACKAGE\tMODULES\tAGE")
			for _, k := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.Version, k.Package, strings.Join(k.Modules, ","), age(time.Since(k.FetchedAt)))
			}
			return tw.Flush()
		},
	}
}
