package forkexec

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/creack/pty"
)

// eachPath runs f with the fast path and with os.StartProcess. The fast
// path is skipped, saying why, where this kernel refuses it.
func eachPath(t *testing.T, f func(t *testing.T)) {
	t.Run("clone3", func(t *testing.T) {
		requireFast(t)
		f(t)
		if !Fast() {
			t.Fatal("Start fell back to os.StartProcess")
		}
	})
	t.Run("portable", func(t *testing.T) {
		fallback.Store(true)
		t.Cleanup(func() { fallback.Store(false) })
		f(t)
	})
}

func requireFast(t *testing.T) {
	t.Helper()
	fallback.Store(false)
	if !fastBuilt {
		t.Skip("no clone3 path on this platform")
	}
	p, err := Start("/bin/true", []string{"true"}, &Attr{Files: stdio(t, nil, nil, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if !Fast() {
		var uts syscall.Utsname
		_ = syscall.Uname(&uts)
		t.Skipf("this kernel refuses clone3 with CLONE_CLEAR_SIGHAND (Linux 5.5+): %s", cstr(uts.Release[:]))
	}
}

func cstr(b []int8) string {
	var s []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

// stdio is Files of in, out and errw; nil ones are /dev/null.
func stdio(t *testing.T, in, out, errw *os.File) [3]*os.File {
	t.Helper()
	files := [3]*os.File{in, out, errw}
	for i, f := range files {
		if f != nil {
			continue
		}
		null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { null.Close() })
		files[i] = null
	}
	return files
}

// run starts argv with attr, its stdout and stderr on pipes unless attr
// has them, and returns both outputs and the exit code.
func run(t *testing.T, argv []string, attr *Attr) (stdout, stderr string, code int) {
	t.Helper()
	or, ow, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	er, ew, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	if attr.Files[1] == nil {
		attr.Files[1] = ow
	}
	if attr.Files[2] == nil {
		attr.Files[2] = ew
	}
	attr.Files = stdio(t, attr.Files[0], attr.Files[1], attr.Files[2])
	p, err := Start(argv[0], argv, attr)
	ow.Close()
	ew.Close()
	if err != nil {
		t.Fatal(err)
	}
	var errBuf bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&errBuf, er); close(done) }()
	out, _ := io.ReadAll(or)
	<-done
	st, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return string(out), errBuf.String(), st.ExitCode()
}

func TestStartWiresStdioDirAndEnv(t *testing.T) {
	eachPath(t, func(t *testing.T) {
		dir := t.TempDir()
		out, errOut, code := run(t, []string{"/bin/sh", "-c", `echo "$FOO"; pwd; echo oops >&2; exit 3`},
			&Attr{Dir: dir, Env: []string{"FOO=bar", "PATH=/usr/bin:/bin"}})
		if want := "bar\n" + dir + "\n"; out != want || errOut != "oops\n" || code != 3 {
			t.Fatalf("got stdout %q stderr %q exit %d; want %q, %q, 3", out, errOut, code, want, "oops\n")
		}
	})
}

// TestStartMovesLowFds gives the child, as its fd 0, the agent's fd 2 and,
// as its fd 2, the agent's fd 0: putting the first in place must not
// close the second.
func TestStartMovesLowFds(t *testing.T) {
	eachPath(t, func(t *testing.T) {
		var want []string
		for _, fd := range []int{2, 0} {
			l, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, l)
		}
		out, _, code := run(t, []string{"/bin/sh", "-c", "readlink /proc/self/fd/0 /proc/self/fd/2 >&1"},
			&Attr{Env: []string{"PATH=/usr/bin:/bin"}, Files: [3]*os.File{os.Stderr, nil, os.Stdin}})
		if got := strings.Fields(out); code != 0 || strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("child fds 0 and 2: %q (exit %d), want %q", got, code, want)
		}
	})
}

// statusField is a field of /proc/PID/status text.
func statusField(status, name string) string {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestStartSignalState: a child starts with no signal blocked or caught,
// and with the agent's ignored signals still ignored.
func TestStartSignalState(t *testing.T) {
	caught := make(chan os.Signal, 1)
	signal.Notify(caught, syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGHUP)
	signal.Ignore(syscall.SIGUSR2)
	t.Cleanup(func() { signal.Stop(caught); signal.Reset(syscall.SIGUSR2) })
	self, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	eachPath(t, func(t *testing.T) {
		out, _, code := run(t, []string{"/bin/cat", "/proc/self/status"}, &Attr{})
		if code != 0 {
			t.Fatalf("cat exited %d", code)
		}
		got := map[string]string{}
		for _, k := range []string{"SigBlk", "SigIgn", "SigCgt"} {
			got[k] = statusField(out, k)
		}
		want := map[string]string{"SigBlk": "0000000000000000", "SigIgn": statusField(string(self), "SigIgn"), "SigCgt": "0000000000000000"}
		if got["SigBlk"] != want["SigBlk"] || got["SigIgn"] != want["SigIgn"] || got["SigCgt"] != want["SigCgt"] {
			t.Fatalf("child signal state %v, want %v", got, want)
		}
		if ign, _ := strconv.ParseUint(got["SigIgn"], 16, 64); ign&(1<<(syscall.SIGUSR2-1)) == 0 {
			t.Fatalf("SIGUSR2, ignored by the parent, is not ignored in the child: SigIgn %s", got["SigIgn"])
		}
	})
}

// procStat returns the fields of /proc/PID/stat after the command name.
func procStat(t *testing.T, stat string) []string {
	t.Helper()
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		t.Fatalf("not a stat line: %q", stat)
	}
	return strings.Fields(stat[i+1:])
}

func TestStartSession(t *testing.T) {
	eachPath(t, func(t *testing.T) {
		for _, setsid := range []bool{true, false} {
			out, _, _ := run(t, []string{"/bin/cat", "/proc/self/stat"}, &Attr{Setsid: setsid})
			pid := strings.Fields(out)[0]
			f := procStat(t, out) // state ppid pgrp session ...
			if leads := f[3] == pid; leads != setsid {
				t.Fatalf("Setsid %v: child %s has session %s", setsid, pid, f[3])
			}
		}
	})
}

func TestStartCredential(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to change user")
	}
	eachPath(t, func(t *testing.T) {
		out, _, code := run(t, []string{"/bin/cat", "/proc/self/status"},
			&Attr{Credential: &syscall.Credential{Uid: 65534, Gid: 65533, Groups: []uint32{4, 27}}})
		got := []string{statusField(out, "Uid"), statusField(out, "Gid"), statusField(out, "Groups")}
		want := []string{"65534\t65534\t65534\t65534", "65533\t65533\t65533\t65533", "4 27"}
		if code != 0 || strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("child ids %q (exit %d), want %q", got, code, want)
		}
	})
}

func TestStartControllingTerminal(t *testing.T) {
	eachPath(t, func(t *testing.T) {
		master, tty, err := pty.Open()
		if err != nil {
			t.Fatal(err)
		}
		defer master.Close()
		p, err := Start("/bin/cat", []string{"cat", "/proc/self/stat"},
			&Attr{Files: [3]*os.File{tty, tty, tty}, Setsid: true, Setctty: true})
		tty.Close()
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(master) // ends with EIO once the child is gone
		if _, err := p.Wait(); err != nil {
			t.Fatal(err)
		}
		f := procStat(t, string(out)) // state ppid pgrp session tty_nr ...
		if len(f) < 5 || f[4] == "0" {
			t.Fatalf("the child has no controlling terminal: %q", out)
		}
	})
}

func TestStartErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		path string
		argv []string
		attr Attr
		want error
	}{
		{"missing program", "/nonexistent/prog", []string{"prog"}, Attr{}, syscall.ENOENT},
		{"not executable", file, []string{"file"}, Attr{}, syscall.EACCES},
		{"missing dir", "/bin/true", []string{"true"}, Attr{Dir: "/nonexistent"}, syscall.ENOENT},
		{"dir is a file", "/bin/true", []string{"true"}, Attr{Dir: file}, syscall.ENOTDIR},
		{"NUL in an argument", "/bin/true", []string{"true", "a\x00b"}, Attr{}, syscall.EINVAL},
	}
	eachPath(t, func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				attr := tc.attr
				attr.Files = stdio(t, nil, nil, nil)
				_, err := Start(tc.path, tc.argv, &attr)
				var pe *os.PathError
				if !errors.As(err, &pe) || pe.Op != "fork/exec" || pe.Path != tc.path || !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want fork/exec %s: %v", err, tc.path, tc.want)
				}
				// The failed child is reaped: the test has no child left.
				var ws syscall.WaitStatus
				if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); !errors.Is(err, syscall.ECHILD) {
					t.Fatalf("a child is left behind: wait4 = %d, %v", pid, err)
				}
			})
		}
	})
	t.Run("setctty without setsid", func(t *testing.T) {
		_, err := Start("/bin/true", []string{"true"}, &Attr{Files: stdio(t, nil, nil, nil), Setctty: true})
		if err == nil || err.Error() != "forkexec: Setctty needs Setsid" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := Start("/bin/true", []string{"true"}, &Attr{})
		if err == nil || err.Error() != "forkexec: Files[0] is nil" {
			t.Fatalf("got %v", err)
		}
	})
}

// BenchmarkStart starts /bin/true and waits for it, by each path.
func BenchmarkStart(b *testing.B) {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	for _, portable := range []bool{false, true} {
		name := "clone3"
		if portable {
			name = "portable"
		}
		b.Run(name, func(b *testing.B) {
			fallback.Store(portable)
			defer fallback.Store(false)
			attr := &Attr{Files: [3]*os.File{null, null, null}, Setsid: true}
			for b.Loop() {
				p, err := Start("/bin/true", []string{"true"}, attr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := p.Wait(); err != nil {
					b.Fatal(err)
				}
			}
			if !portable && !Fast() {
				b.Fatal("the fast path fell back")
			}
		})
	}
}
