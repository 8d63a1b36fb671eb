package pidfd

import (
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestWait(t *testing.T) {
	cmd := exec.Command("sleep", "0.2")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep: ", err)
	}
	defer cmd.Wait()
	fd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		t.Skip("no pidfds: ", err)
	}
	defer unix.Close(fd)

	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	idles := 0
	if err := Wait(short, fd, 5*time.Millisecond, func() { idles++ }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on a running process with a short context = %v, want DeadlineExceeded", err)
	}
	if idles == 0 {
		t.Errorf("idle was never called while the process ran")
	}
	if err := Wait(context.Background(), fd, 5*time.Millisecond, nil); err != nil {
		t.Fatalf("Wait until the process exits: %v", err)
	}
}
