package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	den "github.com/denhq/den/sdk/go"
)

// execFlags are the flags of exec and run that shape the process.
type execFlags struct {
	interactive, tty bool
	cwd, user, tag   string
	env              []string
}

// register adds the flags to fs; withEnv adds --env (run has the
// sandbox's instead).
func (f *execFlags) register(fs *pflag.FlagSet, withEnv bool) {
	fs.BoolVarP(&f.interactive, "interactive", "i", false, "forward stdin to the command")
	fs.BoolVarP(&f.tty, "tty", "t", false, "run the command on a terminal (implies -i; raw mode when stdin is a terminal)")
	fs.StringVar(&f.cwd, "cwd", "", "working directory of the command (default: the user's home)")
	fs.StringVarP(&f.user, "user", "u", "", "user to run the command as (default: the sandbox's default user)")
	fs.StringVar(&f.tag, "tag", "", "tag naming the process, for later reconnects")
	if withEnv {
		fs.StringArrayVarP(&f.env, "env", "e", nil, "environment variable KEY=VALUE of the command (repeatable)")
	}
}

// options builds the SDK's exec options for argv (checked non-empty).
func (f *execFlags) options(cmd *cobra.Command, argv []string) (den.ExecOptions, error) {
	env, err := parsePairs(cmd, "--env", f.env)
	if err != nil {
		return den.ExecOptions{}, err
	}
	return den.ExecOptions{
		Cmd: argv[0], Args: argv[1:], Env: env, Cwd: f.cwd, User: f.user, Tag: f.tag,
		Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr(),
	}, nil
}

func (a *app) execCmd() *cobra.Command {
	var f execFlags
	cmd := &cobra.Command{
		Use:   "exec ID [flags] -- CMD [ARGS...]",
		Short: "Run a command in a sandbox and exit with its exit code",
		Long: "Run a command in a sandbox, streaming its stdout and stderr, and exit with its exit code.\n" +
			"Ctrl-C sends SIGTERM to the command (twice: SIGKILL) and still waits for it;\n" +
			"with -t it is typed into the command's terminal instead.",
		Annotations: map[string]string{annotationCommandAfterDash: "true"},
		Args:        argsBetween(2, -1, "a sandbox ID and a command (den exec ID -- CMD [ARGS...])"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, argv, err := splitAtDash(cmd, args, 1)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			sb, err := c.Get(cmd.Context(), id)
			if err != nil {
				return err
			}
			sigs, stop := notifyInterrupt()
			defer stop()
			return execExit(a.execIn(cmd.Context(), cmd, sb, &f, argv, sigs))
		},
	}
	f.register(cmd.Flags(), true)
	return cmd
}

// splitAtDash splits args into the n positional arguments before the
// command and the command. "--" marks the command's start; without it the
// command starts after n arguments.
func splitAtDash(cmd *cobra.Command, args []string, n int) (string, []string, error) {
	at := cmd.ArgsLenAtDash()
	if at < 0 {
		at = n
	}
	if at != n || len(args) <= n {
		return "", nil, usagef(cmd, "usage: %s", cmd.UseLine())
	}
	return args[0], args[n:], nil
}

// notifyInterrupt catches SIGINT until stop is called.
func notifyInterrupt() (<-chan os.Signal, func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt)
	return sigs, func() { signal.Stop(sigs) }
}

// execExit turns a remote exit code into the CLI's exit.
func execExit(code int, err error) error {
	if err != nil {
		return err
	}
	if code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}

// execIn runs argv in sb per the flags and returns the exit code the CLI
// should exit with. Interrupts on sigs are forwarded as signals (see
// forwardInterrupts).
func (a *app) execIn(ctx context.Context, cmd *cobra.Command, sb *den.Sandbox, f *execFlags, argv []string, sigs <-chan os.Signal) (int, error) {
	opts, err := f.options(cmd, argv)
	if err != nil {
		return 0, err
	}
	if f.interactive || f.tty {
		opts.Stdin = cmd.InOrStdin()
	}
	pids := make(chan uint32, 1)
	opts.OnStart = func(pid uint32) { pids <- pid }
	var wg sync.WaitGroup
	done := make(chan struct{})
	defer func() { close(done); wg.Wait() }()
	wg.Go(func() { forwardInterrupts(ctx, sb, pids, sigs, done, cmd.ErrOrStderr()) })
	var st den.ExitStatus
	if f.tty {
		st, err = runTTY(ctx, cmd, sb, opts, &wg, done)
	} else {
		st, err = sb.Exec(ctx, opts)
	}
	if err != nil {
		return 0, err
	}
	return exitCode(cmd.ErrOrStderr(), st), nil
}

// forwardInterrupts sends SIGTERM to the process for the first interrupt
// and SIGKILL for later ones, once its PID is known, until done closes.
func forwardInterrupts(ctx context.Context, sb *den.Sandbox, pids <-chan uint32, sigs <-chan os.Signal, done <-chan struct{}, stderr io.Writer) {
	var pid uint32
	pending, sent := 0, 0
	for {
		select {
		case <-done:
			return
		case pid = <-pids:
		case <-sigs:
			pending++
		}
		for ; pid != 0 && sent < pending; sent++ {
			sig := den.SIGTERM
			if sent > 0 {
				sig = den.SIGKILL
			}
			fmt.Fprintf(stderr, "den: sending %v to the command\n", sig)
			if err := sb.Signal(ctx, den.Selector{PID: pid}, sig); err != nil {
				fmt.Fprintf(stderr, "den: %v\n", err)
			}
		}
	}
}

// exitCode maps how the remote process ended to a shell-style exit code:
// its code, 128+N for signal N, 1 when it could not run.
func exitCode(stderr io.Writer, st den.ExitStatus) int {
	if st.Exited {
		return st.Code
	}
	if name, ok := strings.CutPrefix(st.Status, "signal: "); ok {
		for n := syscall.Signal(1); n < 65; n++ {
			if n.String() == name {
				return 128 + int(n)
			}
		}
	}
	if st.Error != "" {
		fmt.Fprintf(stderr, "den: command failed: %s\n", st.Error)
	} else if st.Status != "" {
		fmt.Fprintf(stderr, "den: command ended: %s\n", st.Status)
	}
	if st.Code > 0 {
		return st.Code
	}
	return 1
}

// runTTY runs opts on a remote pseudo-terminal sized like the local one,
// with the local terminal in raw mode (restored on return) and window
// size changes forwarded. Goroutines it starts join wg and stop on done.
func runTTY(ctx context.Context, cmd *cobra.Command, sb *den.Sandbox, opts den.ExecOptions, wg *sync.WaitGroup, done <-chan struct{}) (den.ExitStatus, error) {
	size := den.PTYSize{Cols: 80, Rows: 24}
	in, ok := stdinFile(cmd)
	if ok && term.IsTerminal(int(in.Fd())) {
		fd := int(in.Fd())
		if w, h, err := term.GetSize(fd); err == nil {
			size = den.PTYSize{Cols: uint32(w), Rows: uint32(h)}
		}
		old, err := term.MakeRaw(fd)
		if err != nil {
			return den.ExitStatus{}, fmt.Errorf("put terminal in raw mode: %w", err)
		}
		defer func() { _ = term.Restore(fd, old) }()
		pids := make(chan uint32, 1)
		next := opts.OnStart
		opts.OnStart = func(pid uint32) { next(pid); pids <- pid }
		wg.Go(func() { forwardResizes(ctx, sb, fd, pids, done) })
	}
	opts.PTY = &size
	if _, set := opts.Env["TERM"]; !set {
		opts.Env = withEnv(opts.Env, "TERM", termName())
	}
	return sb.Exec(ctx, opts)
}

func withEnv(env map[string]string, k, v string) map[string]string {
	if env == nil {
		env = map[string]string{}
	}
	env[k] = v
	return env
}

func termName() string {
	if t := os.Getenv("TERM"); t != "" {
		return t
	}
	return "xterm-256color"
}
