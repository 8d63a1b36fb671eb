package guest

import (
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// reapInterval is how often the reaper looks for zombies even without a
// SIGCHLD, since signals coalesce and may be missed.
const reapInterval = 5 * time.Second

// procStat is what the reaper, tree kills and the OOM killer need from
// /proc/<pid>/stat.
type procStat struct {
	pid, ppid int
	sid       int // session ID: a process the agent starts leads its own
	state     byte
	rss       uint64 // resident set size in bytes; 0 where unknown
}

// readProcs lists the processes visible in /proc.
func readProcs() []procStat {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []procStat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(pid); ok {
			out = append(out, st)
		}
	}
	return out
}

// readStat parses /proc/<pid>/stat: "pid (comm) S ppid ...". comm may hold
// spaces and parentheses, so fields are read after the last ')'.
func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 || len(f[0]) != 1 {
		return procStat{}, false
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, false
	}
	st := procStat{pid: pid, ppid: ppid, state: f[0][0]}
	// After ')': state ppid pgrp session ... with rss (in pages) at 21.
	if len(f) > 21 {
		st.sid, _ = strconv.Atoi(f[3])
		if pages, err := strconv.ParseUint(f[21], 10, 64); err == nil {
			st.rss = pages * uint64(os.Getpagesize())
		}
	}
	return st, true
}

// descendants returns the pids of root's descendants, found by ppid.
func descendants(root int) []int {
	children := map[int][]int{}
	for _, st := range readProcs() {
		children[st.ppid] = append(children[st.ppid], st.pid)
	}
	var out []int
	queue := children[root]
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		out = append(out, pid)
		queue = append(queue, children[pid]...)
	}
	return out
}

// startReaper reaps orphaned zombies until Close: on each SIGCHLD and every
// reapInterval.
func (a *Agent) startReaper() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	a.goOwned(func() {
		defer signal.Stop(sigs)
		t := time.NewTicker(reapInterval)
		defer t.Stop()
		for {
			select {
			case <-a.ctx.Done():
				return
			case <-sigs:
			case <-t.C:
			}
			a.reapOrphans()
		}
	})
}

// reapOrphans reaps every zombie child of the agent that the agent did not
// start itself; it never touches the exit status of the agent's own
// processes, which their waiters collect. It returns how many it reaped.
func (a *Agent) reapOrphans() int {
	a.procs.spawnMu.Lock()
	defer a.procs.spawnMu.Unlock()
	self := os.Getpid()
	n := 0
	for _, st := range readProcs() {
		if st.ppid != self || st.state != 'Z' || a.procs.owns(st.pid) {
			continue
		}
		var ws syscall.WaitStatus
		if pid, err := syscall.Wait4(st.pid, &ws, syscall.WNOHANG, nil); err == nil && pid == st.pid {
			n++
		}
	}
	if n > 0 {
		a.log.Debug("reaped orphans", "count", n)
	}
	return n
}
