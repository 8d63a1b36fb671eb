package guest

import (
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestChildPipe: the agent's end takes deadlines (it is in the poller),
// the child's end blocks, both close on exec, and bytes flow from the
// writer to the reader either way round.
func TestChildPipe(t *testing.T) {
	for _, childReads := range []bool{false, true} {
		agent, child, err := childPipe(childReads)
		if err != nil {
			t.Fatal(err)
		}
		flags := func(f *os.File) (fl, fd int) {
			t.Helper()
			raw, err := f.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			_ = raw.Control(func(p uintptr) {
				fl, _ = unix.FcntlInt(p, unix.F_GETFL, 0)
				fd, _ = unix.FcntlInt(p, unix.F_GETFD, 0)
			})
			return fl, fd
		}
		if fl, fd := flags(child); fl&unix.O_NONBLOCK != 0 || fd&unix.FD_CLOEXEC == 0 {
			t.Fatalf("childReads %v: child end flags %#x fd flags %#x: want blocking and close-on-exec", childReads, fl, fd)
		}
		if fl, fd := flags(agent); fl&unix.O_NONBLOCK == 0 || fd&unix.FD_CLOEXEC == 0 {
			t.Fatalf("childReads %v: agent end flags %#x fd flags %#x: want non-blocking and close-on-exec", childReads, fl, fd)
		}
		reader, writer := agent, child
		if childReads {
			reader, writer = child, agent
			// The agent's end writes with a deadline; a full pipe times out.
			if err := agent.SetWriteDeadline(time.Now().Add(10 * time.Millisecond)); err != nil {
				t.Fatalf("agent's end takes no write deadline: %v", err)
			}
		} else {
			if err := agent.SetReadDeadline(time.Now().Add(10 * time.Millisecond)); err != nil {
				t.Fatalf("agent's end takes no read deadline: %v", err)
			}
			if _, err := agent.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read of an empty pipe past its deadline: %v", err)
			}
			_ = agent.SetReadDeadline(time.Time{})
		}
		if _, err := writer.Write([]byte("ok")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2)
		if n, err := reader.Read(buf); err != nil || string(buf[:n]) != "ok" {
			t.Fatalf("childReads %v: read %q, %v", childReads, buf[:n], err)
		}
		agent.Close()
		child.Close()
	}
}
