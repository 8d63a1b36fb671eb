package cli

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
)

// infoCmd is `den info`: the server's version, node and runtimes.
func (a *app) infoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Show the server's version, node and sandbox runtimes",
		Args:  argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			info, err := c.Info(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), info)
			}
			return printInfo(cmd.OutOrStdout(), info)
		},
	}
}

func printInfo(w io.Writer, info *rest.Info) error {
	fmt.Fprintf(w, "version  %s\nnode     %s\n\n", info.Version, info.Node)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUNTIME\tISOLATION\tACCEL\tDEFAULT\tSUSPEND\tPOOLS")
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "-"
	}
	for _, r := range info.RuntimeDetails {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Isolation, orDash(r.Accel), yes(r.Default), yes(r.Suspend), yes(r.Pool))
	}
	return tw.Flush()
}
