package guest

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

// The OOM killer. gVisor has no OOM killer of its own: a sandbox that
// allocates past its host cgroup's limit is killed as a whole by the host.
// The runtime driver therefore gives the host cgroup headroom above the
// sandbox's limit and passes that limit to the agent, whose killer samples
// the sandbox's memory use and, once it exceeds the limit, kills the
// largest consumer inside the sandbox, as Linux's OOM killer does in a
// container.

const (
	// oomInterval is how often the killer samples memory use. It bounds
	// how far a fast allocation overshoots the limit before it is seen.
	oomInterval = 20 * time.Millisecond
	// oomGrace bounds how long the killer waits for its last victims to
	// exit, releasing their memory, before it may choose again.
	oomGrace = 2 * time.Second
)

// oomKiller is the agent's OOM killer. Its fields are fixed before start
// but for pending, which only the killer's goroutine uses.
//
// Memory use is the sum of the processes' RSS (/proc/<pid>/stat). In
// gVisor a process's RSS grows when the sentry maps memory for it, before
// the host commits that memory, so a large allocation is seen before the
// host cgroup is charged for it. gVisor's /proc/meminfo is not used: its
// usage comes from a commit scan that the sentry throttles and that blocks
// for seconds while a large allocation is being populated, which is
// exactly when the killer must act. RSS over-counts pages that processes
// share (binaries, libraries) and does not count tmpfs files; the host
// cgroup's limit, set with headroom by the driver, still bounds the
// sandbox as a whole.
type oomKiller struct {
	limit    uint64            // bytes; use above it kills
	interval time.Duration     // between samples
	procs    func() []procStat // the process table, with RSS

	pending      map[int]bool // the last victims, until they are gone
	pendingUntil time.Time    // or until then
}

// newOOMKiller returns a killer for limit bytes that reads /proc, or nil
// when limit is 0 (no killer).
func newOOMKiller(limit uint64) *oomKiller {
	if limit == 0 {
		return nil
	}
	return &oomKiller{limit: limit, interval: oomInterval, procs: readProcs}
}

// oomMessage is the end event error of a process tree the killer killed.
func oomMessage(limit uint64) string {
	return fmt.Sprintf("out of memory: the process tree used more than the sandbox's memory limit (%d MiB) and was killed", limit>>20)
}

// totalRSS is the memory use of procs: the sum of their RSS.
func totalRSS(procs []procStat) uint64 {
	var n uint64
	for _, st := range procs {
		n += st.rss
	}
	return n
}

// startOOMKiller runs the killer until Close. It does nothing without one.
func (a *Agent) startOOMKiller() {
	if a.oom == nil {
		return
	}
	a.log.Info("OOM killer on", "limit_mib", a.oom.limit>>20, "interval", a.oom.interval)
	a.goOwned(func() {
		t := time.NewTicker(a.oom.interval)
		defer t.Stop()
		for {
			select {
			case <-a.ctx.Done():
				return
			case now := <-t.C:
				a.checkMemory(now)
			}
		}
	})
}

// checkMemory takes one sample and kills a victim when use is past the
// limit and no earlier victim is still exiting.
// Preconditions: called only from the killer's goroutine (or a test).
func (a *Agent) checkMemory(now time.Time) {
	k := a.oom
	procs := k.procs()
	used := totalRSS(procs)
	if used <= k.limit || k.waiting(procs, now) {
		return
	}
	a.procs.spawnMu.RLock() // no spawn is half done: every leader is known
	leaders := a.procs.pids()
	a.procs.spawnMu.RUnlock()
	v, ok := chooseVictim(procs, leaders, os.Getpid())
	if !ok {
		return
	}
	a.oomKill(v, used)
	k.pending, k.pendingUntil = make(map[int]bool, len(v.pids)), now.Add(oomGrace)
	for _, pid := range v.pids {
		k.pending[pid] = true
	}
}

// waiting reports whether a victim of the killer may still be exiting:
// one is still running in procs and oomGrace has not passed.
func (k *oomKiller) waiting(procs []procStat, now time.Time) bool {
	if len(k.pending) == 0 || now.After(k.pendingUntil) {
		k.pending = nil
		return false
	}
	for _, st := range procs {
		if st.state != 'Z' && k.pending[st.pid] {
			return true
		}
	}
	k.pending = nil
	return false
}

// oomKill kills victim v with SIGKILL and logs it. A tree the agent
// started ends with the OOM error in its end event.
func (a *Agent) oomKill(v oomVictim, used uint64) {
	if v.leader != 0 {
		if p, ok := a.procs.byPid(uint32(v.leader)); ok {
			p.oomLimit.Store(a.oom.limit)
			_ = p.signal(syscall.SIGKILL)
		}
	}
	for _, pid := range v.pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	a.log.Warn("out of memory: killed a process tree", "leader", v.leader, "pid", v.pids[0],
		"processes", len(v.pids), "rss_mib", v.rss>>20, "used_mib", used>>20, "limit_mib", a.oom.limit>>20)
}

// oomVictim is what the OOM killer kills: a group of processes (see
// groupOf) and, when the group is the tree of a process the agent started
// and still waits for, that process (leader; else 0).
type oomVictim struct {
	leader int
	pids   []int  // the processes to kill
	rss    uint64 // their total RSS in bytes
}

// chooseVictim picks the OOM victim among procs: the group with the
// largest total RSS. leaders are the processes the agent waits for; self
// is the agent, which with PID 1 is never chosen. ok is false when there
// is nothing to kill.
func chooseVictim(procs []procStat, leaders []int, self int) (v oomVictim, ok bool) {
	isLeader := make(map[int]bool, len(leaders))
	for _, l := range leaders {
		isLeader[l] = l != self && l != 1
	}
	g := grouping{ppid: make(map[int]int, len(procs)), isLeader: isLeader}
	for _, st := range procs {
		g.ppid[st.pid] = st.ppid
		if st.pid == self {
			g.selfSid = st.sid
		}
	}
	groups := map[int]*oomVictim{}
	var keys []int // in first-seen order, for a deterministic choice
	for _, st := range procs {
		if st.pid == self || st.pid == 1 {
			continue
		}
		key := g.groupOf(st)
		grp := groups[key]
		if grp == nil {
			grp = &oomVictim{}
			if key > 0 && isLeader[key] {
				grp.leader = key
			}
			groups[key] = grp
			keys = append(keys, key)
		}
		grp.pids = append(grp.pids, st.pid)
		grp.rss += st.rss
	}
	for _, key := range keys {
		if grp := groups[key]; grp.rss > v.rss {
			v, ok = *grp, true
		}
	}
	return v, ok
}

// grouping assigns processes to the groups the OOM killer kills together.
type grouping struct {
	ppid     map[int]int
	isLeader map[int]bool
	selfSid  int // the agent's session, whose members stay single
}

// groupOf returns the group key of st: the leader whose tree st is in (st
// descends from it by ppid); else st's session, since every process the
// agent starts leads its own session and reparented descendants keep it;
// else, in the agent's own session, -pid: the process alone.
func (g grouping) groupOf(st procStat) int {
	// Walk up at most len(ppid) steps: a ppid cycle cannot loop.
	for pid, n := st.pid, 0; pid > 1 && n <= len(g.ppid); pid, n = g.ppid[pid], n+1 {
		if g.isLeader[pid] {
			return pid
		}
	}
	if st.sid > 1 && st.sid != g.selfSid {
		return st.sid
	}
	return -st.pid
}
