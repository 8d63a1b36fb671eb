package gvisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/pidfd"
)

// waitPollInterval bounds how long Wait blocks in one poll(2) before it
// looks at ctx and the sandbox's OOM count again.
const waitPollInterval = 500 * time.Millisecond

// Wait implements driver.Waiter. It watches the sandbox process through a
// pidfd (which works for processes that are not our children: runsc
// detaches the sandbox), so no runsc process runs while a sandbox lives.
func (d *Driver) Wait(ctx context.Context, id string) (driver.Status, error) {
	if err := checkID(id); err != nil {
		return driver.Status{}, err
	}
	p := d.paths(id)
	st, err := readState(p)
	if err != nil {
		return driver.Status{}, fmt.Errorf("wait for sandbox %s: %w", id, err)
	}
	if st.Phase == phaseSuspended {
		return driver.Status{Reason: driver.ReasonSuspended, StartedAt: st.StartedAt}, nil
	}
	fd, err := openPidfd(p)
	if err != nil {
		if s, ok := suspendedStatus(p); ok { // Suspend removed the pid file meanwhile
			return s, nil
		}
		return driver.Status{}, fmt.Errorf("wait for sandbox %s: %w", id, err)
	}
	if fd >= 0 {
		defer unix.Close(fd)
		// The host's memcg OOM killer kills one task of the cgroup: the
		// sentry, the gofer or a systrap stub (which maps the guest's
		// memory, so it is often the largest). The sentry survives the
		// latter two in a state that depends on timing, so a sandbox with
		// any OOM kill is stopped as a whole, as documented.
		oomCheck := func() {
			if oomKilled(st.Cgroup) {
				_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
			}
		}
		if err := pidfd.Wait(ctx, fd, waitPollInterval, oomCheck); err != nil {
			if ctx.Err() != nil {
				return driver.Status{}, errdefs.Wrap(errdefs.Canceled, err, "wait for sandbox %s", id)
			}
			return driver.Status{}, fmt.Errorf("wait for sandbox %s: %w", id, err)
		}
	}
	// The process has exited; runsc may still call it running until its
	// zombie is reaped, so the status is built here rather than asked for.
	// A suspended sandbox exits too: Suspend marks it so before it stops.
	if s, ok := suspendedStatus(p); ok {
		return s, nil
	}
	reason := "exited"
	if oomKilled(st.Cgroup) {
		reason = "oom"
	}
	return driver.Status{Reason: reason, StartedAt: st.StartedAt}, nil
}

// suspendedStatus is the Status of the sandbox at p when it is suspended.
func suspendedStatus(p paths) (driver.Status, bool) {
	st, err := readState(p)
	if err != nil || st.Phase != phaseSuspended {
		return driver.Status{}, false
	}
	return driver.Status{Reason: driver.ReasonSuspended, StartedAt: st.StartedAt}, true
}

// openPidfd opens a pidfd on the sandbox process, or returns -1 when the
// process is already gone.
func openPidfd(p paths) (int, error) {
	data, err := os.ReadFile(p.pidFile())
	if err != nil {
		return -1, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return -1, fmt.Errorf("pid file %s holds %q", p.pidFile(), data)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return -1, nil
	}
	if err != nil {
		return -1, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	return fd, nil
}
