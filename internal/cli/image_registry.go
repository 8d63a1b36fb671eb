package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
	den "github.com/denhq/den/sdk/go"
)

// registryFlags are the flags of commands that talk to a registry.
type registryFlags struct {
	insecure      bool
	username      string
	passwordStdin bool
}

func (f *registryFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.insecure, "insecure", false, "allow plain HTTP to the registry (loopback and private addresses use it anyway)")
	fl.StringVarP(&f.username, "username", "u", "", "user name at the registry")
	fl.BoolVar(&f.passwordStdin, "password-stdin", false, "read the registry password (or token) from stdin")
}

// password reads the password from stdin with --password-stdin.
func (f *registryFlags) password(cmd *cobra.Command) (string, error) {
	if !f.passwordStdin {
		return "", nil
	}
	if f.username == "" {
		return "", usagef(cmd, "--password-stdin needs --username")
	}
	b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 64<<10))
	if err != nil {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", usagef(cmd, "--password-stdin: stdin is empty")
	}
	return pw, nil
}

func (a *app) imagePullCmd() *cobra.Command {
	var reg registryFlags
	var platform string
	cmd := &cobra.Command{
		Use:   "pull [--insecure] [--username U --password-stdin] [--platform OS/ARCH] REF",
		Short: "Pull an image from a registry onto the server",
		Args:  argsBetween(1, 1, "one image reference REF"),
		RunE: func(cmd *cobra.Command, args []string) error {
			password, err := reg.password(cmd)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			opts := den.PullOptions{Insecure: reg.insecure, Username: reg.username, Password: password,
				Platform: platform, Progress: a.progress(cmd.ErrOrStderr())}
			img, err := c.Images().Pull(cmd.Context(), args[0], opts)
			if err != nil {
				return registryError(cmd, args[0], reg, err)
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), img)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", img.Name, img.ID)
			return nil
		},
	}
	reg.register(cmd)
	cmd.Flags().StringVar(&platform, "platform", "", "platform to pick from a multi-platform image, e.g. linux/arm64 (default: the server's)")
	return cmd
}

func (a *app) imagePushCmd() *cobra.Command {
	var reg registryFlags
	cmd := &cobra.Command{
		Use:   "push [--insecure] [--username U --password-stdin] NAME [DEST]",
		Short: "Push an image to a registry (DEST defaults to NAME) and print its digest",
		Args:  argsBetween(1, 2, "an image NAME and optionally a DEST reference"),
		RunE: func(cmd *cobra.Command, args []string) error {
			password, err := reg.password(cmd)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			dest := args[len(args)-1]
			opts := den.PushOptions{Insecure: reg.insecure, Username: reg.username, Password: password,
				Progress: a.progress(cmd.ErrOrStderr())}
			digest, err := c.Images().Push(cmd.Context(), args[0], dest, opts)
			if err != nil {
				return registryError(cmd, dest, reg, err)
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), rest.ImageEvent{Digest: digest})
			}
			fmt.Fprintln(cmd.OutOrStdout(), digest)
			return nil
		},
	}
	reg.register(cmd)
	return cmd
}

// registryHint is advice for a registry failure, found by a phrase of the
// server's message (internal/image's, go-containerregistry's and the Go
// standard library's wording). The first hint with a matching phrase wins,
// so the specific causes come before the general ones.
type registryHint struct {
	phrases []string
	cause   string
	hint    func(registryFlags) string
}

var registryHints = []registryHint{
	{[]string{"connection refused"}, "connection refused", func(f registryFlags) string {
		if f.insecure {
			return "is the registry running?"
		}
		return "is the registry running? use --insecure for plain-HTTP registries"
	}},
	{[]string{"server gave HTTP response to HTTPS client"}, "the registry speaks plain HTTP, not HTTPS",
		func(registryFlags) string { return "use --insecure" }},
	{[]string{"x509:", "tls: failed to verify", "certificate signed by unknown authority"}, "the registry's TLS certificate does not verify",
		func(registryFlags) string { return "add its CA to the den server's trusted certificates" }},
	{[]string{"no such host"}, "unknown registry host",
		func(registryFlags) string { return "check the host name in the reference" }},
	{[]string{"i/o timeout", "deadline exceeded"}, "the registry did not answer in time",
		func(registryFlags) string { return "can the den server reach it?" }},
	{[]string{"UNAUTHORIZED", "authentication required", "requires credentials", "rejected the credentials"}, "unauthorized", func(f registryFlags) string {
		if f.username != "" {
			return "check --username, the password and the repository name"
		}
		return "log in with --username and --password-stdin, and check the repository name"
	}},
	{[]string{"DENIED", "denied access"}, "the registry denied access",
		func(registryFlags) string { return "check that the user may use this repository" }},
	{[]string{"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "not found in registry"}, "no such image in the registry",
		func(registryFlags) string { return "check the repository name and tag" }},
	{[]string{"is rate limiting", "TOOMANYREQUESTS"}, "the registry is rate limiting",
		func(registryFlags) string { return "wait, or log in: anonymous pulls have lower limits" }},
	{[]string{"cannot reach registry", "connection to registry"}, "cannot reach the registry",
		func(registryFlags) string { return "is it running, and reachable from the den server?" }},
}

// registryError prints a registry failure of the server as "den image
// pull: REF: cause — advice" when it recognises the cause, and returns
// err unchanged otherwise (failures of den itself included).
func registryError(cmd *cobra.Command, ref string, f registryFlags, err error) error {
	var api *den.APIError
	if !errors.As(err, &api) {
		return err
	}
	for _, h := range registryHints {
		for _, p := range h.phrases {
			if strings.Contains(api.Message, p) {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s: %s — %s\n", cmd.CommandPath(), ref, h.cause, h.hint(f))
				return &ExitError{Code: 1}
			}
		}
	}
	return err
}
