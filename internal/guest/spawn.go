package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	pb "github.com/denhq/den/api/envd/process"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/guest/forkexec"
)

// spawnSpec is a validated request to start a process.
type spawnSpec struct {
	req     *pb.StartRequest
	acct    *account
	path    string // resolved executable
	dir     string
	env     []string
	cred    *syscall.Credential
	timeout time.Duration // kill after this long; 0 = never
}

// prepare validates req for acct and resolves its executable and cwd.
// cached reports that a cached lookup answered (see lookups): when the
// start then fails, the caller forgets the cache and prepares again.
func (a *Agent) prepare(req *pb.StartRequest, acct *account) (s *spawnSpec, cached bool, err error) {
	cfg := req.GetProcess()
	if cfg.GetCmd() == "" {
		return nil, false, errdefs.New(errdefs.InvalidArgument, "process.cmd is empty")
	}
	s = &spawnSpec{req: req, acct: acct, env: acct.environ(a.baseEnv(), cfg.GetEnvs())}
	var hitDir, hitPath bool
	if s.dir, hitDir, err = a.lookups.workDir(acct, cfg.GetCwd(), a.cfg.DefaultDir); err != nil {
		return nil, false, err
	}
	if s.path, hitPath, err = a.lookups.lookPath(cfg.GetCmd(), envValue(s.env, "PATH"), s.dir); err != nil {
		return nil, false, err
	}
	if s.cred, err = acct.credential(); err != nil {
		return nil, false, err
	}
	return s, hitDir || hitPath, nil
}

// workDir resolves a requested cwd. Without one a process starts in
// defaultDir (the image's working directory), else in the user's home, or
// in / when neither exists (as for "nobody"). hit reports a cached answer.
func (l *lookups) workDir(acct *account, cwd, defaultDir string) (dir string, hit bool, err error) {
	if cwd == "" {
		for _, dir := range []string{defaultDir, acct.Home} {
			if dir == "" {
				continue
			}
			if yes, hit := l.isDir(dir); yes {
				return dir, hit, nil
			}
		}
		return "/", false, nil
	}
	if dir, err = acct.resolvePath(cwd); err != nil {
		return "", false, err
	}
	yes, hit := l.isDir(dir)
	if !yes {
		return "", false, errdefs.New(errdefs.InvalidArgument, "cwd %q is not a directory", dir)
	}
	return dir, hit, nil
}

// prepareAndSpawn prepares and spawns req's process for acct. A start that
// fails after a cached lookup answered is tried once more with the cache
// forgotten: the answer may be stale (a directory renamed above a watched
// one), and a fresh one says what is really wrong.
func (a *Agent) prepareAndSpawn(req *pb.StartRequest, acct *account, timeout time.Duration) (*proc, *subscriber, error) {
	spec, cached, err := a.prepare(req, acct)
	if err != nil {
		return nil, nil, err
	}
	spec.timeout = timeout
	p, sub, err := a.spawn(spec)
	if err == nil || !cached || errdefs.KindOf(err) != errdefs.InvalidArgument {
		return p, sub, err
	}
	a.lookups.forget()
	if spec, _, err = a.prepare(req, acct); err != nil {
		return nil, nil, err
	}
	spec.timeout = timeout
	return a.spawn(spec)
}

// spawn starts the process of s, registers it and subscribes its starter,
// so the starter sees all output. Readers and the waiter run as goroutines
// owned by the agent; Close cannot begin waiting for them while spawnMu is
// held, so they always start.
func (a *Agent) spawn(s *spawnSpec) (*proc, *subscriber, error) {
	a.procs.spawnMu.RLock()
	defer a.procs.spawnMu.RUnlock()
	if a.ctx.Err() != nil {
		return nil, nil, errdefs.New(errdefs.Unavailable, "agent is closing")
	}
	tag := s.req.GetTag()
	if err := a.procs.reserveTag(tag); err != nil {
		return nil, nil, err
	}
	p, sub, err := a.fork(s)
	if err != nil {
		a.procs.releaseTag(tag)
		return nil, nil, err
	}
	a.procs.add(p)
	readers := &sync.WaitGroup{}
	for _, o := range p.outs {
		readers.Add(1)
		a.goOwned(func() { defer readers.Done(); p.pump(o) })
	}
	a.goOwned(func() {
		// Logged here, off the way to the start event.
		a.startPathLogged.Do(func() { a.log.Info("process start path", "clone3_clear_sighand", forkexec.Fast()) })
		a.log.Info("process started", "pid", p.pid, "tag", tag, "cmd", filepath.Base(s.path), "user", s.acct.Name, "pty", p.tty != nil)
		a.await(p, readers, s.timeout)
	})
	return p, sub, nil
}

// fork starts the child with its stdio wired up.
// Preconditions: procs.spawnMu is held shared.
func (a *Agent) fork(s *spawnSpec) (*proc, *subscriber, error) {
	cfg := s.req.GetProcess()
	p := &proc{tag: s.req.GetTag(), cfg: cfg, slow: a.slowSubscriber, subs: map[*subscriber]struct{}{}}
	attr := &forkexec.Attr{Env: s.env, Dir: s.dir, Setsid: true, Credential: s.cred}
	var err error
	if s.req.Pty != nil {
		err = p.wirePTY(s.req.GetPty(), attr)
	} else {
		err = p.wirePipes(s.req.GetStdin(), attr)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("set up stdio: %w", err)
	}
	sub, _ := p.subscribe()
	p.process, err = forkexec.Start(s.path, append([]string{cfg.GetCmd()}, cfg.GetArgs()...), attr)
	closeChildEnds(attr)
	if err != nil {
		p.closeParentEnds()
		return nil, nil, errdefs.Wrap(errdefs.InvalidArgument, err, "start %s", cfg.GetCmd())
	}
	p.pid = uint32(p.process.Pid)
	return p, sub, nil
}

// wirePipes gives the child, in attr, pipes for stdout and stderr and,
// when withStdin, for stdin; otherwise its stdin is /dev/null. The caller
// closes the child's ends after the start (closeChildEnds).
func (p *proc) wirePipes(withStdin bool, attr *forkexec.Attr) error {
	fail := func(err error) error {
		closeChildEnds(attr)
		p.closeParentEnds()
		return err
	}
	for i, kind := range []outputKind{outStdout, outStderr} {
		r, w, err := childPipe(false)
		if err != nil {
			return fail(err)
		}
		attr.Files[1+i] = w
		p.outs = append(p.outs, output{f: r, kind: kind})
	}
	if !withStdin {
		null, err := devNull()
		if err != nil {
			return fail(err)
		}
		attr.Files[0] = null // shared: closeChildEnds leaves it open
		return nil
	}
	w, r, err := childPipe(true)
	if err != nil {
		return fail(err)
	}
	attr.Files[0], p.stdin = r, w
	return nil
}

// childPipe makes a pipe between the agent and a child: the agent's end is
// non-blocking in Go's poller (deadlines work on it), the child's end
// blocking and outside it. childReads says which end is the child's. It
// makes half the syscalls of os.Pipe, which puts both ends in the poller
// only for the child's to leave it again (each syscall of a process's
// start costs tens of microseconds in a gVisor sandbox fresh from a pool).
func childPipe(childReads bool) (agent, child *os.File, err error) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		return nil, nil, os.NewSyscallError("pipe2", err)
	}
	a, c := fds[0], fds[1]
	if childReads {
		a, c = c, a
	}
	// F_SETFL leaves the access mode as it is; a new pipe has no other flag.
	if _, err := unix.FcntlInt(uintptr(a), unix.F_SETFL, unix.O_NONBLOCK); err != nil {
		syscall.Close(a)
		syscall.Close(c)
		return nil, nil, os.NewSyscallError("fcntl", err)
	}
	return os.NewFile(uintptr(a), "|agent"), os.NewFile(uintptr(c), "|child"), nil
}

// closeChildEnds closes the child's ends of its stdio in attr, but not the
// shared /dev/null.
func closeChildEnds(attr *forkexec.Attr) {
	null, _ := devNull()
	for i, f := range attr.Files {
		if f != nil && f != null {
			f.Close()
		}
		attr.Files[i] = nil
	}
}

// devNull is /dev/null, opened once for the stdin of every process that
// has none of its own (an open and a close fewer per start).
var devNull = sync.OnceValues(func() (*os.File, error) { return os.Open(os.DevNull) })

// wirePTY gives the child, in attr, a new terminal of the requested size
// as its controlling terminal and stdio.
func (p *proc) wirePTY(req *pb.PTY, attr *forkexec.Attr) error {
	master, tty, err := pty.Open()
	if err != nil {
		return err
	}
	fail := func(err error) error {
		master.Close()
		tty.Close()
		return err
	}
	if sz := req.GetSize(); sz != nil {
		if err := pty.Setsize(master, &pty.Winsize{Rows: uint16(sz.Rows), Cols: uint16(sz.Cols)}); err != nil {
			return fail(err)
		}
	}
	if cred := attr.Credential; cred != nil {
		if err := tty.Chown(int(cred.Uid), int(cred.Gid)); err != nil {
			return fail(err)
		}
	}
	// One file in three slots: closeChildEnds closes it once per slot,
	// and os.File.Close after the first is a no-op.
	attr.Files = [3]*os.File{tty, tty, tty}
	attr.Setctty = true
	p.tty = master
	p.outs = []output{{f: master, kind: outPTY}}
	return nil
}

// closeParentEnds closes the agent's ends of the child's stdio.
func (p *proc) closeParentEnds() {
	for _, o := range p.outs {
		o.f.Close()
	}
	p.inMu.Lock()
	if p.stdin != nil {
		p.stdin.Close()
		p.stdin = nil
	}
	p.inMu.Unlock()
}

// await waits for the process to exit, lets the readers drain its output,
// then sends the end event and forgets the process. With a timeout it kills
// the process tree when the timeout passes first.
func (a *Agent) await(p *proc, readers *sync.WaitGroup, timeout time.Duration) {
	if timeout > 0 {
		t := time.AfterFunc(timeout, func() { _ = p.signal(syscall.SIGKILL) })
		defer t.Stop()
	}
	st, err := p.process.Wait()
	p.state = st
	deadline := time.Now()
	if p.tty != nil {
		deadline = deadline.Add(ptyDrainGrace)
	}
	for _, o := range p.outs {
		_ = o.f.SetReadDeadline(deadline)
	}
	readers.Wait()
	ev := p.endEvent(err)
	p.publish(ev, true) // first: what follows is not on the way to the client
	p.closeParentEnds()
	a.log.Info("process ended", "pid", p.pid, "status", ev.GetEnd().GetStatus(), "oom_killed", p.oomLimit.Load() > 0)
	a.procs.remove(p)
}

// lookPath finds cmd like a shell would with the child's PATH; a cmd with a
// slash is taken as a path, relative to dir.
func lookPath(cmd, pathEnv, dir string) (string, error) {
	if strings.Contains(cmd, "/") {
		p := cmd
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if isExecutable(p) {
			return p, nil
		}
		return "", errdefs.New(errdefs.InvalidArgument, "executable %q not found", cmd)
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, cmd)
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", errdefs.New(errdefs.InvalidArgument, "executable %q not found in PATH", cmd)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// envValue returns the value of key in env, "K=V" entries.
func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}
