package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/pidfd"
)

// waitPollInterval bounds how long Wait blocks in one poll(2) before it
// looks at ctx again.
const waitPollInterval = 500 * time.Millisecond

// Wait implements driver.Waiter: it watches the QEMU process through a
// pidfd (QEMU is not our child after a den restart). A suspended sandbox
// returns at once with Reason driver.ReasonSuspended; so does a Wait in
// progress when Suspend stops the VM.
func (d *Driver) Wait(ctx context.Context, id string) (driver.Status, error) {
	if err := checkID(id); err != nil {
		return driver.Status{}, err
	}
	dir := d.sandboxDir(id)
	st, err := readState(dir)
	if err != nil {
		return driver.Status{}, fmt.Errorf("wait for sandbox %s: %w", id, err)
	}
	if st.Phase == phaseSuspended {
		return driver.Status{Reason: driver.ReasonSuspended, StartedAt: st.StartedAt}, nil
	}
	if alive(st.PID, st.Dir) {
		fd, err := unix.PidfdOpen(st.PID, 0)
		if err != nil && !errors.Is(err, unix.ESRCH) {
			return driver.Status{}, fmt.Errorf("wait for sandbox %s: pidfd_open: %w", id, err)
		}
		if err == nil {
			err = pidfd.Wait(ctx, fd, waitPollInterval, nil)
			unix.Close(fd)
			if err != nil {
				if ctx.Err() != nil {
					return driver.Status{}, errdefs.Wrap(errdefs.Canceled, err, "wait for sandbox %s", id)
				}
				return driver.Status{}, fmt.Errorf("wait for sandbox %s: %w", id, err)
			}
		}
	}
	return d.stoppedStatus(id)
}

// stoppedStatus is the Status of a sandbox whose QEMU is gone: suspended,
// or dead with the reason its console shows.
func (d *Driver) stoppedStatus(id string) (driver.Status, error) {
	dir := d.sandboxDir(id)
	st, err := readState(dir)
	if err != nil {
		return driver.Status{}, err
	}
	if st.Phase == phaseSuspended {
		return driver.Status{Reason: driver.ReasonSuspended, StartedAt: st.StartedAt}, nil
	}
	return driver.Status{Reason: deathReason(dir), StartedAt: st.StartedAt}, nil
}

// deathReason reads why a VM stopped from its console: the guest kernel's
// panic line (its init, the agent, died; or the kernel crashed), else
// "exited".
func deathReason(dir string) string {
	console, err := os.ReadFile(filepath.Join(dir, "console.log"))
	if err != nil {
		return "exited"
	}
	if i := bytes.LastIndex(console, []byte("Kernel panic - not syncing:")); i >= 0 {
		line, _, _ := strings.Cut(string(console[i:]), "\n")
		return "guest kernel panic: " + strings.TrimSpace(strings.TrimPrefix(line, "Kernel panic - not syncing:"))
	}
	return "exited"
}
