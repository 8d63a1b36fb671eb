package guest

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestChooseVictim(t *testing.T) {
	const self = 1
	const mib = 1 << 20
	agent := procStat{pid: 1, sid: 1, rss: 900 * mib} // never chosen
	tests := []struct {
		name    string
		procs   []procStat
		leaders []int
		want    oomVictim
		wantOK  bool
	}{
		{
			name:    "largest tree by total RSS",
			procs:   []procStat{agent, {pid: 10, ppid: 1, sid: 10, rss: 50 * mib}, {pid: 11, ppid: 10, sid: 10, rss: 60 * mib}, {pid: 20, ppid: 1, sid: 20, rss: 100 * mib}},
			leaders: []int{10, 20},
			want:    oomVictim{leader: 10, pids: []int{10, 11}, rss: 110 * mib},
			wantOK:  true,
		},
		{
			name: "reparented session member stays in its leader's tree",
			procs: []procStat{agent, {pid: 10, ppid: 1, sid: 10, rss: 1 * mib},
				{pid: 12, ppid: 1, sid: 10, rss: 80 * mib}, {pid: 20, ppid: 1, sid: 20, rss: 50 * mib}},
			leaders: []int{10, 20},
			want:    oomVictim{leader: 10, pids: []int{10, 12}, rss: 81 * mib},
			wantOK:  true,
		},
		{
			name:    "descendant in a new session stays in its leader's tree",
			procs:   []procStat{agent, {pid: 10, ppid: 1, sid: 10, rss: 1 * mib}, {pid: 11, ppid: 10, sid: 11, rss: 70 * mib}},
			leaders: []int{10},
			want:    oomVictim{leader: 10, pids: []int{10, 11}, rss: 71 * mib},
			wantOK:  true,
		},
		{
			name: "orphans of an ended leader are killed together by session",
			procs: []procStat{agent, {pid: 30, ppid: 1, sid: 25, rss: 20 * mib}, {pid: 31, ppid: 1, sid: 25, rss: 20 * mib},
				{pid: 10, ppid: 1, sid: 10, rss: 30 * mib}},
			leaders: []int{10},
			want:    oomVictim{pids: []int{30, 31}, rss: 40 * mib},
			wantOK:  true,
		},
		{
			name:    "largest single process in the agent's session",
			procs:   []procStat{agent, {pid: 40, ppid: 1, sid: 1, rss: 90 * mib}, {pid: 41, ppid: 1, sid: 1, rss: 30 * mib}, {pid: 10, ppid: 1, sid: 10, rss: 80 * mib}},
			leaders: []int{10},
			want:    oomVictim{pids: []int{40}, rss: 90 * mib},
			wantOK:  true,
		},
		{
			name:    "nothing but the agent",
			procs:   []procStat{agent},
			leaders: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := chooseVictim(tt.procs, tt.leaders, self)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(oomVictim{})); diff != "" {
				t.Errorf("victim (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOOMMessage(t *testing.T) {
	want := "out of memory: the process tree used more than the sandbox's memory limit (512 MiB) and was killed"
	if got := oomMessage(512 << 20); got != want {
		t.Errorf("oomMessage = %q, want %q", got, want)
	}
}

// TestOOMKillEndEvent starts a process, lets the killer see the sandbox
// past its limit with that process the largest (a fake process table),
// and checks the process is killed and its end event says why.
func TestOOMKillEndEvent(t *testing.T) {
	e := newEnv(t)
	a := e.agent
	ctx := testCtx(t)
	stream, err := e.proc(e.codecs()[1]).Start(ctx, startReq("sleep", "60"))
	if err != nil {
		t.Fatal(err)
	}
	var r result
	readUntil(t, stream, &r, func(r *result) bool { return r.pid != 0 })
	pid := int(r.pid)
	a.oom = &oomKiller{limit: 64 << 20, interval: time.Hour, procs: func() []procStat {
		return []procStat{{pid: os.Getpid(), rss: 10 << 20}, {pid: pid, sid: pid, state: 'S', rss: 100 << 20}}
	}}
	a.checkMemory(time.Now())
	readUntil(t, stream, &r, func(r *result) bool { return r.end != nil })
	want := "out of memory: the process tree used more than the sandbox's memory limit (64 MiB) and was killed"
	if r.end.GetStatus() != "signal: killed" || r.end.GetError() != want {
		t.Errorf("end = status %q error %q, want %q and %q", r.end.GetStatus(), r.end.GetError(), "signal: killed", want)
	}
	if len(a.oom.pending) != 1 || !a.oom.pending[pid] {
		t.Errorf("pending victims = %v, want [%d]", a.oom.pending, pid)
	}
}

// TestOOMKillerUnderLimit checks the killer leaves processes alone while
// use is within the limit, and that Close stops its goroutine.
func TestOOMKillerUnderLimit(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	a := newAgent(Config{MemoryLimitBytes: 64 << 20}, userDB{})
	sampled := make(chan struct{}, 1)
	a.oom.interval = time.Millisecond
	a.oom.procs = func() []procStat {
		select {
		case sampled <- struct{}{}:
		default:
		}
		return []procStat{{pid: cmd.Process.Pid, sid: cmd.Process.Pid, rss: 64 << 20}}
	}
	a.startOOMKiller()
	<-sampled
	<-sampled
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if !alive(cmd.Process.Pid) {
		t.Errorf("process at the limit (not past it) was killed")
	}
}
