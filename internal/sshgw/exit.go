package sshgw

import (
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh"

	pb "github.com/denhq/den/api/envd/process"
)

// signalNames are the signals RFC 4254 names (section 6.10), by their
// Linux numbers.
var signalNames = map[syscall.Signal]string{
	syscall.SIGABRT: "ABRT", syscall.SIGALRM: "ALRM", syscall.SIGFPE: "FPE",
	syscall.SIGHUP: "HUP", syscall.SIGILL: "ILL", syscall.SIGINT: "INT",
	syscall.SIGKILL: "KILL", syscall.SIGPIPE: "PIPE", syscall.SIGQUIT: "QUIT",
	syscall.SIGSEGV: "SEGV", syscall.SIGTERM: "TERM", syscall.SIGUSR1: "USR1",
	syscall.SIGUSR2: "USR2",
}

// signalNumbers are the signals a client may send ("signal" requests) and
// the guest agent delivers.
var signalNumbers = map[string]pb.Signal{
	"HUP": pb.Signal(syscall.SIGHUP), "INT": pb.Signal(syscall.SIGINT),
	"QUIT": pb.Signal(syscall.SIGQUIT), "KILL": pb.Signal_SIGNAL_SIGKILL,
	"TERM": pb.Signal_SIGNAL_SIGTERM, "USR1": pb.Signal(syscall.SIGUSR1),
	"USR2": pb.Signal(syscall.SIGUSR2), "ALRM": pb.Signal(syscall.SIGALRM),
}

// exitSignal is the payload of "exit-signal" (RFC 4254 6.10).
type exitSignal struct {
	Signal     string
	CoreDumped bool
	Error      string
	Lang       string
}

// exit reports how the process ended: exit-status with its code, or
// exit-signal with the signal that killed it (its name parsed from the
// guest's status, e.g. "signal: killed"); a signal with no RFC name is
// exit status 128+n as a shell reports it, and an unknown end is 255.
func (s *session) exit(end *pb.ProcessEvent_EndEvent) {
	if end.GetExited() {
		_, _ = s.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(end.GetExitCode())}))
		return
	}
	sig, core, ok := parseSignalStatus(end.GetStatus())
	if name, known := signalNames[sig]; ok && known {
		_, _ = s.ch.SendRequest("exit-signal", false, ssh.Marshal(exitSignal{Signal: name, CoreDumped: core}))
		return
	}
	status := uint32(255)
	if ok {
		status = 128 + uint32(sig)
	}
	_, _ = s.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
}

// parseSignalStatus reads Go's os.ProcessState text of a process killed
// by a signal ("signal: terminated", "signal: segmentation fault (core
// dumped)").
func parseSignalStatus(status string) (sig syscall.Signal, core, ok bool) {
	text, found := strings.CutPrefix(status, "signal: ")
	if !found {
		return 0, false, false
	}
	text, core = strings.CutSuffix(text, " (core dumped)")
	for n := syscall.Signal(1); n < 65; n++ {
		if n.String() == text {
			return n, core, true
		}
	}
	return 0, false, false
}
