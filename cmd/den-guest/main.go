// Command den-guest is den's in-sandbox agent. It serves the E2B envd
// protocol (see package guest) on one or more listeners, over HTTP/1.1 and
// h2c. As PID 1 of a sandbox it also reaps orphaned processes, and with
// --memory-limit-mb it kills the largest process tree when the sandbox uses
// more memory than that.
//
//	den-guest --listen unix:/.den/run/guest.sock --listen tcp:127.0.0.1:49983 --memory-limit-mb 512
//
// As /init of den's microVM initramfs (PID 1) it boots the VM first: see
// package vminit.
//
// `den-guest checkpoint-hook [PHASE]` is the save/restore binary runsc
// runs in the sandbox around a checkpoint (PHASE defaults to
// $GVISOR_SAVE_RESTORE_AUTO_EXEC_MODE): it has the running agent close its
// listeners before a save and listen again after a restore (see
// guest.RunHook).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/denhq/den/internal/guest"
	"github.com/denhq/den/internal/guest/vminit"
)

// hookCommand is the argv[1] of the checkpoint hook.
const hookCommand = "checkpoint-hook"

// config is den-guest's configuration, from flags.
type config struct {
	listen      []string // "unix:PATH" or "tcp:HOST:PORT"
	defaultUser string
	defaultDir  string // working directory of processes that name none
	memoryMB    uint64 // the sandbox's memory limit for the OOM killer; 0 = off
	cpus        int    // the sandbox's CPU allowance, rounded up; 0 = what the sandbox shows
}

// Validate checks that every listen address has a known scheme.
func (c config) Validate() error {
	if len(c.listen) == 0 {
		return errors.New("at least one --listen is required")
	}
	if c.cpus < 0 {
		return fmt.Errorf("--cpus %d: want 0 or more", c.cpus)
	}
	for _, l := range c.listen {
		if _, _, err := guest.SplitListenAddr(l); err != nil {
			return err
		}
	}
	return nil
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if os.Getpid() == 1 && os.Args[0] == vminit.InitPath {
		// The init of a microVM: boot, then exec this binary as the agent.
		err := vminit.Run(os.Args[1:])
		log.Error("den-guest VM init failed", "err", err)
		os.Exit(1)
	}
	if len(os.Args) > 1 && os.Args[1] == guest.SFTPServerCommand {
		// The agent's SFTP server (GET /sftp), on stdin and stdout.
		if err := guest.ServeSFTP(os.Stdin, os.Stdout); err != nil {
			log.Error("den-guest sftp server failed", "err", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == hookCommand {
		if err := runHook(os.Args[2:]); err != nil {
			log.Error("den-guest checkpoint hook failed", "err", err)
			os.Exit(1)
		}
		return
	}
	var cfg config
	fs := flag.NewFlagSet("den-guest", flag.ExitOnError)
	fs.Var((*listFlag)(&cfg.listen), "listen", "address to serve on, unix:PATH, tcp:HOST:PORT or vport:NAME (a microVM's virtio-serial port) (repeatable)")
	fs.StringVar(&cfg.defaultUser, "default-user", "", "user for requests that name none (default root)")
	fs.StringVar(&cfg.defaultDir, "default-dir", "", "working directory of processes that name none (default: the user's home)")
	fs.Uint64Var(&cfg.memoryMB, "memory-limit-mb", 0, "kill the largest process tree once the sandbox uses more than this many MiB (0: never)")
	fs.IntVar(&cfg.cpus, "cpus", 0, "the sandbox's CPU allowance, rounded up: the agent runs Go code on at most this many threads at once (0: as many as the sandbox shows)")
	_ = fs.Parse(os.Args[1:])
	if err := run(cfg, log); err != nil {
		log.Error("den-guest failed", "err", err)
		os.Exit(1)
	}
}

// runHook runs the checkpoint hook for the phase in args, else in the
// environment runsc sets. It prints guest.HookArmedLine when the agent
// will listen again by itself after the checkpoint.
func runHook(args []string) error {
	mode := os.Getenv(guest.HookModeEnv)
	if len(args) > 0 {
		mode = args[0]
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	armed, err := guest.RunHook(ctx, mode)
	if armed {
		fmt.Println(guest.HookArmedLine)
	}
	return err
}

// run serves until SIGTERM or SIGINT, then shuts down.
func run(cfg config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.cpus > 0 {
		// gVisor shows a sandbox every host CPU and enforces its limit with
		// a CFS quota; more Ps than the quota would only add thread
		// hand-offs, each a wake-up through the sentry.
		runtime.GOMAXPROCS(cfg.cpus)
	}
	agent, err := guest.New(guest.Config{DefaultUser: cfg.defaultUser, DefaultDir: cfg.defaultDir, Logger: log, MemoryLimitBytes: cfg.memoryMB << 20})
	if err != nil {
		return err
	}
	defer agent.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv, err := guest.NewServer(agent.Handler(), cfg.listen, log)
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	// Without its control socket the agent still serves; only checkpoints
	// of the sandbox fail.
	ctlCtx, stopCtl := context.WithCancel(ctx)
	ctlDone := make(chan struct{})
	go func() {
		defer close(ctlDone)
		if err := guest.ServeControl(ctlCtx, srv, log); err != nil {
			log.Warn("control socket failed: checkpoints will fail", "err", err)
		}
	}()
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-srv.Errors():
	}
	stopCtl()
	<-ctlDone
	// Closing the agent first ends every process and watch stream, so the
	// server's connections go idle and Stop returns promptly.
	_ = agent.Close()
	srv.Stop(5 * time.Second)
	return err
}
