// Package pidfd waits for processes that are not the caller's children
// (runsc and QEMU outlive den) through Linux pidfds.
package pidfd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Wait blocks until the process of pidfd fd has exited or ctx ends,
// looking at ctx every poll and calling idle (when not nil) each time.
// Once the pidfd is readable the process has released its files and
// memory.
func Wait(ctx context.Context, fd int, poll time.Duration, idle func()) error {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := unix.Poll(fds, int(poll.Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll pidfd: %w", err)
		}
		if n > 0 {
			return nil
		}
		if idle != nil {
			idle()
		}
	}
}
