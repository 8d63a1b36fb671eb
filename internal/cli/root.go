// Package cli implements the den command line: the commands that talk to a
// den server through the Go SDK (create, ls, exec, cp, image, bench, ...).
// The `up` command, which runs the server, is supplied by the caller.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/denhq/den/internal/driver/gvisor"
	den "github.com/denhq/den/sdk/go"
)

// Version is den's version, set at build time with
// -ldflags "-X github.com/denhq/den/internal/cli.Version=v1.2.3".
var Version = "dev"

// errNotConfigured is the error of every command when no server is found.
var errNotConfigured = errors.New("den is not running or not configured: start it with `den up` (or `make up`), or set DEN_URL and DEN_API_KEY")

// ExitError ends the CLI with Code. An empty Message prints nothing, which
// is how `den exec` passes on a remote command's exit code.
type ExitError struct {
	Code    int
	Message string
}

func (e *ExitError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Message
}

// usageError is a mistake in the command line; it exits with status 2.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usage error of cmd.
func usagef(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{cmd: cmd, err: fmt.Errorf(format, args...)}
}

// app holds the global flags; each NewRoot has its own.
type app struct {
	url, apiKey, dataDir string
	json                 bool
	floor                floorFunc // the raw runtime floor of `bench tti`
	// checkpointFloor is the raw runtime floor of `bench resume`.
	checkpointFloor checkpointFloorFunc
}

// NewRoot returns the den command with every subcommand, plus procs: the
// commands that run den's processes (`den up`, `den server`, `den agent`),
// which live in package daemon. Nil entries are skipped.
func NewRoot(procs ...*cobra.Command) *cobra.Command {
	return newRoot(&app{floor: gvisor.MeasureRawFloor, checkpointFloor: gvisorCheckpointFloor}, procs...)
}

// newRoot builds the command tree around a (tests inject fakes into it).
func newRoot(a *app, procs ...*cobra.Command) *cobra.Command {
	root := &cobra.Command{
		Use:           "den",
		Short:         "den: sandboxes for AI agents",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.url, "url", "", "server URL (default: $DEN_URL, else the data dir's env file)")
	pf.StringVar(&a.apiKey, "api-key", "", "API key (default: $DEN_API_KEY, else the data dir's env file)")
	pf.StringVar(&a.dataDir, "data-dir", "", "den's data directory (default: $DEN_DATA_DIR, /var/lib/den for root, else ~/.local/share/den)")
	pf.BoolVar(&a.json, "json", false, "print JSON instead of text")
	root.SetFlagErrorFunc(flagError)
	root.AddCommand(a.createCmd(), a.infoCmd(), a.nodeCmd(), a.netCmd(), a.lsCmd(), a.getCmd(), a.rmCmd(), a.suspendCmd(), a.resumeCmd(), a.snapshotCmd(), a.poolCmd(), a.kernelCmd(), a.forkCmd(), a.execCmd(), a.runCmd(),
		a.cpCmd(), a.portCmd(), a.imageCmd(), a.versionCmd(), a.benchCmd())
	root.AddCommand(a.tenantCmd(), a.keyCmd(), a.tokenCmd(), a.caCmd())
	root.AddCommand(a.sshKeyCmd(), a.sshCmd(), a.sshConfigCmd())
	for _, c := range procs {
		if c == nil {
			continue
		}
		if c.Name() == "server" {
			c.AddCommand(a.serverMembersCmd()) // an API client, which only cli has
		}
		root.AddCommand(c)
	}
	return root
}

// flagError makes a flag parsing error a usage error. For commands that
// run a command line it hints at "--", whose absence is the usual cause.
func flagError(c *cobra.Command, err error) error {
	if c.Annotations[annotationCommandAfterDash] != "" && c.ArgsLenAtDash() < 0 {
		err = fmt.Errorf("%w (put the command after --: %s)", err, c.UseLine())
	}
	return &usageError{cmd: c, err: err}
}

// annotationCommandAfterDash marks commands whose arguments end with a
// command line after "--".
const annotationCommandAfterDash = "den/command-after-dash"

// client builds an SDK client: flags, else DEN_URL/DEN_API_KEY, else the
// env file in the data directory.
func (a *app) client() (*den.Client, error) {
	opts, err := a.options()
	if err != nil {
		return nil, err
	}
	return den.NewClient(opts)
}

// options resolves the server's URL and API key as client does.
func (a *app) options() (den.Options, error) {
	opts, err := den.FromEnvDir(a.dataDir)
	if err != nil && !errors.Is(err, den.ErrNotConfigured) {
		return opts, err
	}
	if a.url != "" {
		opts.URL = a.url
	}
	if a.apiKey != "" {
		opts.APIKey = a.apiKey
	}
	if opts.URL == "" {
		return opts, errNotConfigured
	}
	return opts, nil
}

// Execute runs root and returns the process exit status, printing errors
// to root's stderr: 0 on success, the remote exit code for exec and run, 2
// for usage errors, 1 otherwise.
func Execute(root *cobra.Command) int {
	return report(root.ErrOrStderr(), root.ExecuteContext(context.Background()))
}

// report prints err and maps it to an exit status.
func report(w io.Writer, err error) int {
	var exit *ExitError
	var usage *usageError
	var api *den.APIError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		if exit.Message != "" {
			fmt.Fprintf(w, "den: %s\n", exit.Message)
		}
		return exit.Code
	case errors.As(err, &usage):
		fmt.Fprintf(w, "den: %v\nRun '%s --help' for usage.\n", usage.err, usage.cmd.CommandPath())
		return 2
	case strings.HasPrefix(err.Error(), "unknown command"):
		fmt.Fprintf(w, "den: %v\n", err)
		return 2
	case errors.As(err, &api):
		fmt.Fprintf(w, "den: %s\n", api.Error())
		return 1
	}
	fmt.Fprintf(w, "den: %v\n", err)
	if errors.Is(err, syscall.ECONNREFUSED) {
		fmt.Fprintln(w, "den: nothing answers at that address: is `den up` running? (see DEN_URL, or <data-dir>/env)")
	}
	return 1
}

// stdinFile returns cmd's stdin as an *os.File when it is one.
func stdinFile(cmd *cobra.Command) (*os.File, bool) {
	f, ok := cmd.InOrStdin().(*os.File)
	return f, ok
}

// argsBetween validates that a command has between min and max positional
// arguments (max < 0: no limit), as a usage error naming them.
func argsBetween(min, max int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || (max >= 0 && len(args) > max) {
			return usagef(cmd, "%s takes %s, got %d argument(s)", cmd.CommandPath(), what, len(args))
		}
		return nil
	}
}
