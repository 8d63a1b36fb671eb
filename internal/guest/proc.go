package guest

import (
	"errors"
	"maps"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pb "github.com/denhq/den/api/envd/process"
	"github.com/denhq/den/internal/errdefs"
)

const (
	// subscriberQueue is how many events a subscriber may have queued.
	// With reads of at most readChunk bytes it bounds a subscriber's memory.
	subscriberQueue = 256
	// readChunk is the size of one read of a process's output.
	readChunk = 32 << 10
	// defaultSlowSubscriber is how long output waits for a subscriber whose
	// queue is full before that subscriber is dropped. Output is never held
	// longer, so a stuck client cannot stall a process for good.
	defaultSlowSubscriber = 5 * time.Second
	// ptyDrainGrace is how long PTY output is still read after the process
	// exits: the kernel hands slave writes to the master asynchronously.
	ptyDrainGrace = 200 * time.Millisecond
	// maxDrain bounds what is read after exit from an output that is still
	// being written to by a surviving child.
	maxDrain = 4 << 20
)

// procTable holds the running processes. spawnMu is held shared while a
// process is forked and registered and exclusively by the reaper, so the
// reaper never sees a child of the agent that is not yet in the table.
type procTable struct {
	spawnMu sync.RWMutex

	mu    sync.Mutex
	byPID map[uint32]*proc
	tags  map[string]bool // tags in use, including ones reserved by a spawn
}

func newProcTable() *procTable {
	return &procTable{byPID: map[uint32]*proc{}, tags: map[string]bool{}}
}

// reserveTag claims tag for a process about to start. "" needs no claim.
func (t *procTable) reserveTag(tag string) error {
	if tag == "" {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tags[tag] {
		return errdefs.New(errdefs.AlreadyExists, "a process with tag %q is running", tag)
	}
	t.tags[tag] = true
	return nil
}

func (t *procTable) releaseTag(tag string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.tags, tag)
}

func (t *procTable) add(p *proc) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byPID[p.pid] = p
}

func (t *procTable) remove(p *proc) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.byPID, p.pid)
	if p.tag != "" {
		delete(t.tags, p.tag)
	}
}

// get returns the process sel names.
func (t *procTable) get(sel *pb.ProcessSelector) (*proc, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch s := sel.GetSelector().(type) {
	case *pb.ProcessSelector_Pid:
		if p, ok := t.byPID[s.Pid]; ok {
			return p, nil
		}
		return nil, notFoundProcess("pid " + strconv.FormatUint(uint64(s.Pid), 10))
	case *pb.ProcessSelector_Tag:
		for _, p := range t.byPID {
			if p.tag == s.Tag {
				return p, nil
			}
		}
		return nil, notFoundProcess("tag " + strconv.Quote(s.Tag))
	}
	return nil, errdefs.New(errdefs.InvalidArgument, "process selector needs a pid or a tag")
}

// list returns the running processes ordered by pid.
func (t *procTable) list() []*proc {
	t.mu.Lock()
	defer t.mu.Unlock()
	ps := slices.Collect(maps.Values(t.byPID))
	slices.SortFunc(ps, func(a, b *proc) int { return int(a.pid) - int(b.pid) })
	return ps
}

// pids returns the pids of the running processes.
func (t *procTable) pids() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]int, 0, len(t.byPID))
	for pid := range t.byPID {
		out = append(out, int(pid))
	}
	return out
}

// byPid returns the running process pid, if any.
func (t *procTable) byPid(pid uint32) (*proc, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.byPID[pid]
	return p, ok
}

// owns reports whether pid is a child the agent will wait for itself.
// Preconditions: spawnMu is held exclusively.
func (t *procTable) owns(pid int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.byPID[uint32(pid)]
	return ok
}

// killAll sends SIGKILL to the process group of every running process.
func (t *procTable) killAll() {
	for _, p := range t.list() {
		_ = p.signal(syscall.SIGKILL)
	}
}

// proc is one process started by the agent.
type proc struct {
	pid uint32
	tag string
	cfg *pb.ProcessConfig
	// process is the started process; state is how it ended, set by await
	// before the end event.
	process *os.Process
	state   *os.ProcessState
	tty     *os.File // PTY master; nil without a PTY
	outs    []output // what the agent reads: stdout and stderr, or the PTY

	inMu    sync.Mutex
	stdin   *os.File   // write end of stdin; nil when absent or closed
	writeMu sync.Mutex // serialises writes to stdin

	slow time.Duration // how long to wait for a full subscriber

	oomLimit atomic.Uint64 // the memory limit, once the OOM killer killed the tree

	mu    sync.Mutex
	subs  map[*subscriber]struct{}
	ended bool
}

// output is one stream of a process's output.
type output struct {
	f    *os.File
	kind outputKind
}

type outputKind int

const (
	outStdout outputKind = iota
	outStderr
	outPTY
)

// subscriber is one client stream receiving a process's events.
type subscriber struct {
	ch      chan *pb.ProcessEvent
	gone    chan struct{} // closed when the subscriber is removed
	once    sync.Once
	dropped atomic.Bool // removed for falling behind
}

// subscribe adds a subscriber, or fails with NotFound once the process has
// ended (its end event is already sent).
func (p *proc) subscribe() (*subscriber, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return nil, notFoundProcess("pid " + strconv.FormatUint(uint64(p.pid), 10))
	}
	s := &subscriber{ch: make(chan *pb.ProcessEvent, subscriberQueue), gone: make(chan struct{})}
	p.subs[s] = struct{}{}
	return s, nil
}

func (p *proc) unsubscribe(s *subscriber) {
	p.mu.Lock()
	delete(p.subs, s)
	p.mu.Unlock()
	s.once.Do(func() { close(s.gone) })
}

// publish delivers ev to every subscriber. With end set it marks the
// process ended, so no subscriber joins after the end event.
func (p *proc) publish(ev *pb.ProcessEvent, end bool) {
	p.mu.Lock()
	p.ended = p.ended || end
	subs := slices.Collect(maps.Keys(p.subs))
	p.mu.Unlock()
	for _, s := range subs {
		p.deliver(s, ev)
	}
}

// deliver queues ev for s, waiting at most p.slow for room
// before dropping s.
func (p *proc) deliver(s *subscriber, ev *pb.ProcessEvent) {
	select {
	case s.ch <- ev:
		return
	case <-s.gone:
		return
	default:
	}
	t := time.NewTimer(p.slow)
	defer t.Stop()
	select {
	case s.ch <- ev:
	case <-s.gone:
	case <-t.C:
		s.dropped.Store(true)
		p.unsubscribe(s)
	}
}

// signal sends sig to the process's whole tree: its process group (it leads
// its own session) and every descendant that left the group.
func (p *proc) signal(sig syscall.Signal) error {
	err := syscall.Kill(-int(p.pid), sig)
	for _, pid := range descendants(int(p.pid)) {
		_ = syscall.Kill(pid, sig)
	}
	if errors.Is(err, syscall.ESRCH) {
		return nil // the group is gone; the process is being reaped
	}
	return err
}

// pump publishes what f yields until EOF, an error, or, once the process
// has exited (the waiter set a read deadline), until f is drained.
func (p *proc) pump(o output) {
	buf := make([]byte, readChunk)
	for {
		n, err := o.f.Read(buf)
		if n > 0 {
			p.publish(dataEvent(o.kind, buf[:n]), false)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			p.drain(o, buf)
			return
		}
		if err != nil {
			return
		}
	}
}

// drain reads what o holds now without waiting for more, up to maxDrain.
func (p *proc) drain(o output, buf []byte) {
	rc, err := o.f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		for total := 0; total < maxDrain; {
			n, err := syscall.Read(int(fd), buf)
			if n <= 0 || err != nil {
				return
			}
			total += n
			p.publish(dataEvent(o.kind, buf[:n]), false)
		}
	})
}

// dataEvent copies b into an output event of kind k.
func dataEvent(k outputKind, b []byte) *pb.ProcessEvent {
	b = slices.Clone(b)
	d := &pb.ProcessEvent_DataEvent{}
	switch k {
	case outStdout:
		d.Output = &pb.ProcessEvent_DataEvent_Stdout{Stdout: b}
	case outStderr:
		d.Output = &pb.ProcessEvent_DataEvent_Stderr{Stderr: b}
	default:
		d.Output = &pb.ProcessEvent_DataEvent_Pty{Pty: b}
	}
	return &pb.ProcessEvent{Event: &pb.ProcessEvent_Data{Data: d}}
}

// endEvent describes how process p ended; waitErr is its Wait's error. A
// tree the OOM killer killed ends with oomMessage as its error.
func (p *proc) endEvent(waitErr error) *pb.ProcessEvent {
	ev := endEvent(p.state, waitErr)
	if limit := p.oomLimit.Load(); limit > 0 {
		msg := oomMessage(limit)
		ev.GetEnd().Error = &msg
	}
	return ev
}

// endEvent describes how a process ended; waitErr is its Wait's error,
// which is never about the exit status.
func endEvent(st *os.ProcessState, waitErr error) *pb.ProcessEvent {
	end := &pb.ProcessEvent_EndEvent{ExitCode: -1}
	if st != nil {
		end.ExitCode = int32(st.ExitCode())
		end.Exited = st.Exited()
		end.Status = st.String()
	}
	if waitErr != nil {
		msg := waitErr.Error()
		end.Error = &msg
	}
	return &pb.ProcessEvent{Event: &pb.ProcessEvent_End{End: end}}
}
