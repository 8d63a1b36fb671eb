package gvisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/errdefs"
)

// checkHealth asks the guest agent behind socket for GET /health once.
func checkHealth(ctx context.Context, socket string) error {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialUnix(ctx, socket)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://guest/health", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("guest health: HTTP %d", resp.StatusCode)
	}
	return nil
}

// dialUnix connects to the unix socket at path without following a
// symlink there: the socket's directory is shared with the sandbox, whose
// root could otherwise replace the socket with a link to a host socket and
// have the proxy talk to it. The socket is opened O_PATH|O_NOFOLLOW,
// checked to be a socket, and connected through /proc/self/fd, which also
// keeps the sockaddr short however deep the state directory is.
func dialUnix(ctx context.Context, path string) (net.Conn, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "unix", Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &net.OpError{Op: "dial", Net: "unix", Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, &net.OpError{Op: "dial", Net: "unix", Err: fmt.Errorf("%s is not a socket (mode %#o)", path, st.Mode)}
	}
	var d net.Dialer
	return d.DialContext(ctx, "unix", fmt.Sprintf("/proc/self/fd/%d", fd))
}

// waitHealthy polls the guest agent until it answers, the sandbox process
// exits, ctx ends or the deadline passes. It polls every 1-5 ms: a failed
// attempt costs microseconds (no socket yet, or connection refused), and a
// coarser backoff would add its granularity to every sandbox start.
func waitHealthy(ctx context.Context, deadline time.Time, p paths) error {
	delay := time.Millisecond
	for {
		err := checkHealth(ctx, p.socket())
		if err == nil {
			return nil
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if !sandboxAlive(p) {
			return errdefs.New(errdefs.Unavailable, "sandbox exited before its guest agent answered: %s", logTail(p.log()))
		}
		if time.Now().After(deadline) {
			return errdefs.Wrap(errdefs.Unavailable, err, "guest agent did not answer in time")
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(delay*2, 5*time.Millisecond)
	}
}

// sandboxAlive reports whether the sandbox process in the pid file exists.
// A missing or unreadable pid file counts as alive: it is only a shortcut
// to fail fast when the guest agent crashes at start.
func sandboxAlive(p paths) bool {
	data, err := os.ReadFile(p.pidFile())
	if err != nil {
		return true
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return true
	}
	return !errors.Is(unix.Kill(pid, 0), unix.ESRCH)
}

// ctxErr reports whether err is a context error.
func ctxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
