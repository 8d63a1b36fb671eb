package qemu

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// AgentPort is the name of the virtio-serial port of the agent channel.
const AgentPort = "den.agent"

// vm is what one QEMU process is started with.
type vm struct {
	qemu      string // qemu-system-x86_64
	accel     string // "kvm" or "tcg"
	kernel    string
	initramfs string
	disk      string // the sandbox's qcow2 overlay
	dir       string // holds the sockets and logs
	memoryMB  int64
	cpus      float64
	// agentArgs are den-guest's arguments in the VM.
	agentArgs []string
}

// Paths in a VM's directory.
func (v vm) consoleLog() string { return filepath.Join(v.dir, "console.log") }
func (v vm) qemuLog() string    { return filepath.Join(v.dir, "qemu.log") }
func (v vm) pidFile() string    { return filepath.Join(v.dir, "qemu.pid") }

// args is QEMU's command line: a microvm machine (devices found through
// ACPI), no default devices, the kernel and initramfs, the disk on
// virtio-blk, the agent's port on virtio-serial (a unix socket QEMU
// serves), the console on the serial port into a file, QMP on a socket.
func (v vm) args() []string {
	cpu := "max"
	if v.accel == "kvm" {
		cpu = "host,-arch-capabilities"
	}
	smp := max(1, int(math.Ceil(v.cpus)))
	cmdline := "console=ttyS0 reboot=t panic=-1 quiet den.root=/dev/vda -- " + strings.Join(v.agentArgs, " ")
	return []string{
		"-M", "microvm,acpi=on", "-accel", v.accel, "-cpu", cpu,
		"-m", strconv.FormatInt(v.memoryMB, 10), "-smp", strconv.Itoa(smp),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", v.kernel, "-initrd", v.initramfs, "-append", cmdline,
		"-serial", "file:" + v.consoleLog(),
		"-drive", "file=" + v.disk + ",format=qcow2,if=none,id=root,cache=unsafe", "-device", "virtio-blk-device,drive=root",
		"-device", "virtio-serial-device",
		// Sockets by relative names (QEMU runs in the VM's directory): a
		// unix socket's path is limited to 107 bytes.
		"-chardev", "socket,id=agent,path=agent.sock,server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name=" + AgentPort,
		// Not -qmp unix:...,server=on,wait=off: QEMU 7.2 then waits for
		// a QMP client before it runs the guest.
		"-chardev", "socket,id=qmp,path=qmp.sock,server=on,wait=off", "-mon", "chardev=qmp,mode=control",
		"-pidfile", v.pidFile(),
	}
}

// start runs QEMU in its own session with its output in qemu.log, so the
// VM outlives den. It returns once QEMU runs (not once the guest booted).
func (v vm) start() (*vmProcess, error) {
	logf, err := os.OpenFile(v.qemuLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(v.qemu, v.args()...)
	cmd.Dir = v.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reap it when it exits while we run
	return &vmProcess{Process: cmd.Process, exited: exited}, nil
}

// vmProcess is a QEMU started by this den; exited receives how it ended.
type vmProcess struct {
	*os.Process
	exited chan error
}

// exitStatus describes how p ended, without waiting ("" while it runs).
func (p *vmProcess) exitStatus() string {
	select {
	case err := <-p.exited:
		p.exited <- err
		if err == nil {
			return "exit status 0"
		}
		return err.Error()
	default:
		return ""
	}
}
