//go:build unix

package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	den "github.com/denhq/den/sdk/go"
)

// forwardResizes resizes the remote terminal of the process whose PID
// arrives on pids whenever the local terminal fd changes size (SIGWINCH),
// until done closes.
func forwardResizes(ctx context.Context, sb *den.Sandbox, fd int, pids <-chan uint32, done <-chan struct{}) {
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	var pid uint32
	select {
	case pid = <-pids:
	case <-done:
		return
	}
	for {
		select {
		case <-done:
			return
		case <-winch:
			if w, h, err := term.GetSize(fd); err == nil {
				_ = sb.ResizePTY(ctx, den.Selector{PID: pid}, uint32(w), uint32(h))
			}
		}
	}
}
