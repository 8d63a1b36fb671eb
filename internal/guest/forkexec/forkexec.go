// Package forkexec starts the guest agent's processes.
//
// Go's os.StartProcess resets, in the forked child, every signal handler
// the Go runtime installed: about 60 rt_sigaction calls before the exec.
// On Linux that costs microseconds; under gVisor each call is a trap into
// the sentry, and on a sandbox fresh from a warm pool the child's syscalls
// took 3-4 ms in all (measured with runsc --strace: 66 syscalls between the
// clone and the execve). Start forks instead with clone3 and
// CLONE_CLEAR_SIGHAND, so the kernel resets the handlers in the clone
// itself, and the child makes only the calls its attributes need.
//
// The fast path exists on linux/amd64 and linux/arm64. Elsewhere, and on a
// kernel that refuses clone3 or the flag (Linux before 5.5), Start falls
// back to os.StartProcess, which gives the child the same state.
package forkexec

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
)

// Attr is how a child starts.
type Attr struct {
	// Dir is the working directory; "" keeps the agent's.
	Dir string
	// Env is the whole environment, "K=V" entries.
	Env []string
	// Files are the child's file descriptors 0, 1 and 2, in order; all
	// three are required. Start does not close them.
	Files [3]*os.File
	// Setsid makes the child lead a new session.
	Setsid bool
	// Setctty makes the child's fd 0 its controlling terminal; it needs
	// Setsid.
	Setctty bool
	// Credential, if set, is the user, group and supplementary groups the
	// child runs as.
	Credential *syscall.Credential
}

// fallback is set once clone3 with CLONE_CLEAR_SIGHAND is found refused, or
// by tests.
var fallback atomic.Bool

// Start starts the program at path with argv (argv[0] included) and attr,
// and returns its process. The caller waits for it. An error is an
// *os.PathError for path, as os.StartProcess returns.
//
// The child starts with the default action for every signal the agent
// handles (the signals the agent ignores stay ignored, as across an
// execve), with no signal blocked, and with the agent's resource limits.
func Start(path string, argv []string, attr *Attr) (*os.Process, error) {
	if attr.Setctty && !attr.Setsid {
		return nil, errors.New("forkexec: Setctty needs Setsid")
	}
	for i, f := range attr.Files {
		if f == nil {
			return nil, fmt.Errorf("forkexec: Files[%d] is nil", i)
		}
	}
	if !fallback.Load() {
		p, err := startFast(path, argv, attr)
		if !errors.Is(err, errUnsupported) {
			return p, err
		}
		fallback.Store(true)
	}
	return startPortable(path, argv, attr)
}

// Fast reports whether Start uses clone3 with CLONE_CLEAR_SIGHAND; it is
// known after the first Start.
func Fast() bool { return fastBuilt && !fallback.Load() }

// errUnsupported is startFast's answer when this system cannot take its
// path.
var errUnsupported = errors.New("clone3 with CLONE_CLEAR_SIGHAND is not supported")

// startPortable is Start through os.StartProcess.
func startPortable(path string, argv []string, attr *Attr) (*os.Process, error) {
	return os.StartProcess(path, argv, &os.ProcAttr{
		Dir:   attr.Dir,
		Env:   attr.Env,
		Files: attr.Files[:],
		Sys: &syscall.SysProcAttr{
			Setsid:     attr.Setsid,
			Setctty:    attr.Setctty,
			Ctty:       0,
			Credential: attr.Credential,
		},
	})
}
