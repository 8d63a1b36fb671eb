package guest

import (
	"os"
	"os/exec"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReadProcs: the raw /proc reader finds this process and a child of
// it, with their parents, sessions and this process's RSS.
func TestReadProcs(t *testing.T) {
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	procs := readProcs()
	find := func(pid int) procStat {
		t.Helper()
		i := slices.IndexFunc(procs, func(st procStat) bool { return st.pid == pid })
		if i < 0 {
			t.Fatalf("pid %d not among %d processes read", pid, len(procs))
		}
		return procs[i]
	}
	self, kid := find(os.Getpid()), find(child.Process.Pid)
	if self.ppid != os.Getppid() || self.rss == 0 || self.state == 0 {
		t.Fatalf("this process: %+v, want ppid %d, an RSS and a state", self, os.Getppid())
	}
	if sid, _ := unix.Getsid(0); self.sid != sid {
		t.Fatalf("this process: session %d, want %d", self.sid, sid)
	}
	if kid.ppid != os.Getpid() {
		t.Fatalf("child: %+v, want ppid %d", kid, os.Getpid())
	}
	if _, ok := readStat(1 << 30); ok {
		t.Fatal("readStat of a pid that cannot exist answered")
	}
}
