package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	den "github.com/denhq/den/sdk/go"
)

// buildFlags are the flags of `den image build`.
type buildFlags struct {
	file      string
	tags      []string
	buildArgs []string
	target    string
	noCache   bool
	pull      bool
}

func (a *app) imageBuildCmd() *cobra.Command {
	var f buildFlags
	cmd := &cobra.Command{
		Use:   "build [-f Dockerfile] [-t NAME]... [--build-arg K=V]... [--target STAGE] [--no-cache] [--pull] CONTEXT",
		Short: "Build an image from a Dockerfile on the server, streaming the log, and print its ID",
		Long: "Build sends the CONTEXT directory (less what its .dockerignore names) to the den server,\n" +
			"which builds the Dockerfile in it, running RUN steps in a sandbox. The build log goes to\n" +
			"stdout as it comes (stderr with --json); the image ID is the last line.",
		Args: argsBetween(1, 1, "one build CONTEXT directory"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := f.options(cmd, args[0])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			opts.Log = cmd.OutOrStdout()
			if a.json {
				opts.Log = cmd.ErrOrStderr()
			}
			res, err := c.Images().Build(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintln(cmd.OutOrStdout(), res.ImageID)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "file", "f", "", "the Dockerfile, relative to the current directory (default: CONTEXT/Dockerfile)")
	fl.StringArrayVarP(&f.tags, "tag", "t", nil, "name the image NAME[:TAG] (repeatable)")
	fl.StringArrayVar(&f.buildArgs, "build-arg", nil, "set the ARG KEY to VALUE: KEY=VALUE, or KEY to take its value from the environment (repeatable)")
	fl.StringVar(&f.target, "target", "", "build this stage (default: the last)")
	fl.BoolVar(&f.noCache, "no-cache", false, "build every step afresh")
	fl.BoolVar(&f.pull, "pull", false, "pull base images even when the server has them")
	return cmd
}

// options turns the flags into the SDK's build options.
func (f *buildFlags) options(cmd *cobra.Command, contextDir string) (den.BuildOptions, error) {
	opts := den.BuildOptions{ContextDir: contextDir, Tags: f.tags, Target: f.target, NoCache: f.noCache, Pull: f.pull}
	if fi, err := os.Stat(contextDir); err != nil || !fi.IsDir() {
		return opts, usagef(cmd, "build context %q is not a directory", contextDir)
	}
	if f.file != "" {
		// As with docker, -f is relative to the current directory.
		abs, err := filepath.Abs(f.file)
		if err != nil {
			return opts, err
		}
		if _, err := os.Stat(abs); err != nil {
			return opts, usagef(cmd, "invalid -f %q: %v", f.file, err)
		}
		opts.Dockerfile = abs
	}
	args, err := parseBuildArgs(cmd, f.buildArgs)
	if err != nil {
		return opts, err
	}
	opts.BuildArgs = args
	return opts, nil
}

// parseBuildArgs parses --build-arg values: KEY=VALUE, or KEY alone for
// the value of the environment variable KEY.
func parseBuildArgs(cmd *cobra.Command, vals []string) (map[string]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(vals))
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		if !ok && k != "" {
			val, ok = os.LookupEnv(k)
		}
		if !ok || k == "" {
			return nil, usagef(cmd, "invalid --build-arg %q: want KEY=VALUE, or KEY set in the environment", v)
		}
		m[k] = val
	}
	return m, nil
}
