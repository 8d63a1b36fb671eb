// Command den-guest is den's in-sandbox agent. It serves the E2B envd
// protocol (see package guest) on one or more listeners, over HTTP/1.1 and
// h2c. As PID 1 of a sandbox it also reaps orphaned processes, and with
// --memory-limit-mb it kills the largest process tree when the sandbox uses
// more memory than that.
//
//	den-guest --listen unix:/.den/run/guest.sock --listen tcp:127.0.0.1:49983 --memory-limit-mb 512
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/denhq/den/internal/guest"
)

// config is den-guest's configuration, from flags.
type config struct {
	listen      []string // "unix:PATH" or "tcp:HOST:PORT"
	defaultUser string
	defaultDir  string // working directory of processes that name none
	memoryMB    uint64 // the sandbox's memory limit for the OOM killer; 0 = off
}

// Validate checks that every listen address has a known scheme.
func (c config) Validate() error {
	if len(c.listen) == 0 {
		return errors.New("at least one --listen is required")
	}
	for _, l := range c.listen {
		if _, _, err := splitListen(l); err != nil {
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
	var cfg config
	fs := flag.NewFlagSet("den-guest", flag.ExitOnError)
	fs.Var((*listFlag)(&cfg.listen), "listen", "address to serve on, unix:PATH or tcp:HOST:PORT (repeatable)")
	fs.StringVar(&cfg.defaultUser, "default-user", "", "user for requests that name none (default root)")
	fs.StringVar(&cfg.defaultDir, "default-dir", "", "working directory of processes that name none (default: the user's home)")
	fs.Uint64Var(&cfg.memoryMB, "memory-limit-mb", 0, "kill the largest process tree once the sandbox uses more than this many MiB (0: never)")
	_ = fs.Parse(os.Args[1:])
	if err := run(cfg, log); err != nil {
		log.Error("den-guest failed", "err", err)
		os.Exit(1)
	}
}

// run serves until SIGTERM or SIGINT, then shuts down.
func run(cfg config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	agent, err := guest.New(guest.Config{DefaultUser: cfg.defaultUser, DefaultDir: cfg.defaultDir, Logger: log, MemoryLimitBytes: cfg.memoryMB << 20})
	if err != nil {
		return err
	}
	defer agent.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv := newServer(agent.Handler())
	errc := make(chan error, len(cfg.listen))
	for _, l := range cfg.listen {
		ln, err := listen(l)
		if err != nil {
			return err
		}
		log.Info("listening", "addr", l)
		go func() { errc <- srv.Serve(ln) }()
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-errc:
	}
	// Closing the agent first ends every process and watch stream, so the
	// server's connections go idle and Shutdown returns promptly.
	_ = agent.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := srv.Shutdown(shutdownCtx); serr != nil {
		_ = srv.Close()
	}
	return err
}

// newServer serves h over HTTP/1.1 and unencrypted HTTP/2 (h2c).
func newServer(h http.Handler) *http.Server {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Server{Handler: h, Protocols: p, ReadHeaderTimeout: 30 * time.Second}
}

// listen opens a listener for "unix:PATH" or "tcp:ADDR", removing a stale
// unix socket first.
func listen(l string) (net.Listener, error) {
	network, addr, err := splitListen(l)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		if err := os.Remove(addr); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale socket %s: %w", addr, err)
		}
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", l, err)
	}
	return ln, nil
}

func splitListen(l string) (network, addr string, err error) {
	network, addr, ok := strings.Cut(l, ":")
	if !ok || addr == "" || (network != "unix" && network != "tcp") {
		return "", "", fmt.Errorf("listen address %q: want unix:PATH or tcp:HOST:PORT", l)
	}
	return network, addr, nil
}
