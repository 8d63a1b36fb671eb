//go:build linux && (amd64 || arm64)

package forkexec

import (
	"errors"
	"os"
	"runtime"
	"syscall"
	"unsafe"
)

const fastBuilt = true

// The runtime's hooks around a fork, as package syscall uses them: before,
// they block signals on this thread and forbid stack growth; after, in the
// parent, they undo that.
//
//go:linkname runtimeBeforeFork syscall.runtime_BeforeFork
func runtimeBeforeFork()

//go:linkname runtimeAfterFork syscall.runtime_AfterFork
func runtimeAfterFork()

// rawVfork is in vfork_$GOARCH.s.
func rawVfork(trap, a1, a2, a3 uintptr) (r1 uintptr, err syscall.Errno)

const (
	sysClone3         = 435 // the same number on amd64 and arm64
	cloneClearSighand = 0x100000000
	sigSetmask        = 2
)

// cloneArgs is struct clone_args up to tls (CLONE_ARGS_SIZE_VER0), which
// every kernel with clone3 takes.
type cloneArgs struct {
	flags, pidfd, childTID, parentTID, exitSignal, stack, stackSize, tls uint64
}

// child is everything the child uses, made before the fork: between the
// fork and the exec nothing may be allocated.
type child struct {
	clone   cloneArgs
	path    *byte
	argv    []*byte // NUL-terminated list
	envv    []*byte // NUL-terminated list
	dir     *byte   // nil: stay
	fds     [3]int
	setsid  bool
	setctty bool
	cred    bool
	uid     uintptr
	gid     uintptr
	groups  []uint32
	// errno is written by a child that fails before its exec or in it,
	// then exits; the parent reads it once the vfork returns.
	errno syscall.Errno
}

// startFast is Start through clone3(CLONE_VM|CLONE_VFORK|CLONE_CLEAR_SIGHAND).
func startFast(path string, argv []string, attr *Attr) (*os.Process, error) {
	c, err := newChild(path, argv, attr)
	if err != nil {
		return nil, &os.PathError{Op: "fork/exec", Path: path, Err: err}
	}
	// No fd made without close-on-exec while the child is alive.
	syscall.ForkLock.Lock()
	pid, errno := forkExec(c)
	runtimeAfterFork()
	syscall.ForkLock.Unlock()
	runtime.KeepAlive(attr.Files)
	if errno != 0 {
		if errno == syscall.ENOSYS || errno == syscall.EINVAL || errno == syscall.EPERM {
			return nil, errUnsupported // no clone3, no flag, or a filter refusing clone3
		}
		return nil, &os.PathError{Op: "fork/exec", Path: path, Err: errno}
	}
	if c.errno != 0 {
		reap(int(pid))
		return nil, &os.PathError{Op: "fork/exec", Path: path, Err: c.errno}
	}
	return os.FindProcess(int(pid))
}

// newChild converts what the child needs into the form of the syscalls.
func newChild(path string, argv []string, attr *Attr) (*child, error) {
	c := &child{
		clone:   cloneArgs{flags: syscall.CLONE_VM | syscall.CLONE_VFORK | cloneClearSighand, exitSignal: uint64(syscall.SIGCHLD)},
		setsid:  attr.Setsid,
		setctty: attr.Setctty,
	}
	var err error
	if c.path, err = syscall.BytePtrFromString(path); err != nil {
		return nil, err
	}
	if c.argv, err = cStrings(argv); err != nil {
		return nil, err
	}
	if c.envv, err = cStrings(attr.Env); err != nil {
		return nil, err
	}
	if attr.Dir != "" {
		if c.dir, err = syscall.BytePtrFromString(attr.Dir); err != nil {
			return nil, err
		}
	}
	for i, f := range attr.Files {
		c.fds[i] = int(f.Fd())
	}
	if cr := attr.Credential; cr != nil {
		c.cred, c.uid, c.gid, c.groups = true, uintptr(cr.Uid), uintptr(cr.Gid), cr.Groups
	}
	return c, nil
}

// cStrings is ss as a NUL-terminated list of C strings.
func cStrings(ss []string) ([]*byte, error) {
	out := make([]*byte, len(ss)+1)
	for i, s := range ss {
		p, err := syscall.BytePtrFromString(s)
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

// reap collects a child that failed before its exec.
func reap(pid int) {
	var ws syscall.WaitStatus
	for {
		if _, err := syscall.Wait4(pid, &ws, 0, nil); !errors.Is(err, syscall.EINTR) {
			return
		}
	}
}

// forkExec forks and, in the child, sets up c and execs. It returns in the
// parent only, at once: the child shares this stack frame and runs the rest
// of the function in it, so the parent must not use anything the child may
// have written. The caller calls runtimeAfterFork.
//
// After the fork only raw syscalls are made: no allocation, no call that
// may grow the stack, no write barrier.
//
//go:noinline
//go:norace
//go:nocheckptr
func forkExec(c *child) (pid uintptr, err syscall.Errno) {
	var (
		err1   syscall.Errno
		fds    [3]int
		nextfd int
		i      int
		empty  uint64
		groups uintptr
	)
	fds = c.fds
	nextfd = 3
	for i = 0; i < 3; i++ {
		if fds[i] >= nextfd {
			nextfd = fds[i] + 1
		}
	}
	if len(c.groups) > 0 {
		groups = uintptr(unsafe.Pointer(&c.groups[0]))
	}

	runtimeBeforeFork()
	pid, err = rawVfork(sysClone3, uintptr(unsafe.Pointer(&c.clone)), unsafe.Sizeof(c.clone), 0)
	if err != 0 || pid != 0 {
		return
	}

	// In the child. Its signal handlers are the defaults already
	// (CLONE_CLEAR_SIGHAND); every signal is blocked (runtimeBeforeFork).
	if c.setsid {
		if _, _, err1 = syscall.RawSyscall(syscall.SYS_SETSID, 0, 0, 0); err1 != 0 {
			goto fail
		}
	}
	if _, _, err1 = syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, sigSetmask, uintptr(unsafe.Pointer(&empty)), 0, 8, 0, 0); err1 != 0 {
		goto fail
	}
	if c.cred {
		if _, _, err1 = syscall.RawSyscall(syscall.SYS_SETGROUPS, uintptr(len(c.groups)), groups, 0); err1 != 0 {
			goto fail
		}
		if _, _, err1 = syscall.RawSyscall(syscall.SYS_SETGID, c.gid, 0, 0); err1 != 0 {
			goto fail
		}
		if _, _, err1 = syscall.RawSyscall(syscall.SYS_SETUID, c.uid, 0, 0); err1 != 0 {
			goto fail
		}
	}
	if c.dir != nil {
		if _, _, err1 = syscall.RawSyscall(syscall.SYS_CHDIR, uintptr(unsafe.Pointer(c.dir)), 0, 0); err1 != 0 {
			goto fail
		}
	}
	// Move any fd below its slot out of the way, then put each in place:
	// dup3 makes the copy without close-on-exec; an fd already in place
	// has the flag cleared.
	for i = 0; i < 3; i++ {
		if fds[i] < i {
			if _, _, err1 = syscall.RawSyscall(syscall.SYS_DUP3, uintptr(fds[i]), uintptr(nextfd), syscall.O_CLOEXEC); err1 != 0 {
				goto fail
			}
			fds[i] = nextfd
			nextfd++
		}
	}
	for i = 0; i < 3; i++ {
		if fds[i] == i {
			_, _, err1 = syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(i), syscall.F_SETFD, 0)
		} else {
			_, _, err1 = syscall.RawSyscall(syscall.SYS_DUP3, uintptr(fds[i]), uintptr(i), 0)
		}
		if err1 != 0 {
			goto fail
		}
	}
	if c.setctty {
		if _, _, err1 = syscall.RawSyscall(syscall.SYS_IOCTL, 0, syscall.TIOCSCTTY, 1); err1 != 0 {
			goto fail
		}
	}
	_, _, err1 = syscall.RawSyscall(syscall.SYS_EXECVE,
		uintptr(unsafe.Pointer(c.path)), uintptr(unsafe.Pointer(&c.argv[0])), uintptr(unsafe.Pointer(&c.envv[0])))

fail:
	c.errno = err1
	for {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 253, 0, 0)
	}
}
