package qemu

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// kernelBootArgs skip what a microVM's kernel need not do at boot: the
// crypto self-tests, probing for a PS/2 mouse and PnP keyboard that
// microvm has not, and seeding the RNG the slow way. Measured under TCG
// with kernelTCGArgs: the kernel reaches init in ~1.2 s instead of ~1.7 s.
const kernelBootArgs = "cryptomgr.notests i8042.noaux i8042.nopnp random.trust_cpu=on"

// kernelTCGArgs are added under TCG only: the emulated CPU has no
// speculative execution to mitigate, and its TSC is the only clock, so
// the kernel need not distrust it.
const kernelTCGArgs = "mitigations=off tsc=reliable no_timer_check"

// hostTSCKHz is the host's TSC frequency in kHz, or 0 when unknown. Under
// TCG the guest's TSC is the host's, and a guest kernel left to calibrate
// it against the emulated PIT fails about one boot in four ("tsc: Unable
// to calibrate against PIT", then it waits for a timer tick that never
// comes); told the frequency (tsc_early_khz) it boots every time (10 of
// 10 here, against 6 of 8 without).
var hostTSCKHz = sync.OnceValue(func() int64 {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	var mhz float64
	constant := false
	for line := range strings.Lines(string(data)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "cpu MHz":
			if mhz == 0 {
				mhz, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
			}
		case "flags":
			constant = constant || slices.Contains(strings.Fields(v), "constant_tsc")
		}
	}
	if !constant || mhz <= 0 {
		return 0
	}
	return int64(mhz * 1000)
})

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
	// memory is the file backing the guest's RAM (relative to dir or
	// absolute); QEMU creates it when it does not exist. With memShared
	// it is mapped share=on and holds the RAM; otherwise share=off, a
	// copy-on-write mapping of a checkpoint's memory file that never
	// changes it (see suspend.go).
	memory    string
	memShared bool
	// incoming, when set, is a checkpoint's migration stream: QEMU starts
	// with -incoming defer and gets it as incomingFD (see suspend.go).
	incoming *os.File
	// agentArgs are den-guest's arguments in the VM.
	agentArgs []string
	// tap, when set, is the VM's NIC: a tap device's descriptor (see
	// network.go), which QEMU gets as tapFD(); netArg is the guest's
	// configuration of it (vminit.NetArg).
	tap    *os.File
	netArg string
}

// memoryName is the file in a VM's directory that backs its RAM.
const memoryName = "memory"

// memoryBackend is the id of the RAM's memory backend object.
const memoryBackend = "ram"

// vmMAC is the MAC address of a VM's NIC.
const vmMAC = "52:54:00:de:0e:01"

// incomingFD is the descriptor a restoring QEMU reads the migration
// stream from (its first extra file).
const incomingFD = 3

// extraFiles are the descriptors QEMU inherits, from 3 on: the stream
// (incomingFD), then the tap (tapFD).
func (v vm) extraFiles() []*os.File {
	var files []*os.File
	if v.incoming != nil {
		files = append(files, v.incoming)
	}
	if v.tap != nil {
		files = append(files, v.tap)
	}
	return files
}

// tapFD is the descriptor QEMU reads the tap from.
func (v vm) tapFD() int {
	if v.incoming != nil {
		return incomingFD + 1
	}
	return incomingFD
}

// vcpus is the vCPU count of a sandbox of cpus cores.
func vcpus(cpus float64) int { return max(1, int(math.Ceil(cpus))) }

// qemuOpt escapes a value for a QEMU option list ("," doubles).
func qemuOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// Paths in a VM's directory.
func (v vm) consoleLog() string { return filepath.Join(v.dir, "console.log") }
func (v vm) qemuLog() string    { return filepath.Join(v.dir, "qemu.log") }
func (v vm) pidFile() string    { return filepath.Join(v.dir, "qemu.pid") }

// args is QEMU's command line: a microvm machine (devices found through
// ACPI), no default devices, the kernel and initramfs, the disk on
// virtio-blk, the agent's port on virtio-serial (a unix socket QEMU
// serves), the console on the serial port into a file, QMP on a socket.
// The RAM is a memory-backend-file (see vm.memory), so that a checkpoint
// need not stream it.
func (v vm) args() []string {
	cpu := "max"
	if v.accel == "kvm" {
		cpu = "host,-arch-capabilities"
	}
	cmdline := "console=ttyS0 reboot=t panic=-1 quiet " + kernelBootArgs
	if v.accel == "tcg" {
		cmdline += " " + kernelTCGArgs
		if khz := hostTSCKHz(); khz > 0 {
			cmdline += " tsc_early_khz=" + strconv.FormatInt(khz, 10)
		}
	}
	cmdline += " den.root=/dev/vda"
	if v.tap != nil {
		cmdline += " " + v.netArg
	}
	cmdline += " -- " + strings.Join(v.agentArgs, " ")
	mem := strconv.FormatInt(v.memoryMB, 10)
	args := []string{
		"-M", "microvm,acpi=on,memory-backend=" + memoryBackend, "-accel", v.accel, "-cpu", cpu,
		"-m", mem, "-smp", strconv.Itoa(vcpus(v.cpus)),
		"-object", "memory-backend-file,id=" + memoryBackend + ",size=" + mem + "M,mem-path=" + qemuOpt(v.memory) + ",share=" + onOff(v.memShared),
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
	if v.tap != nil {
		// vhost=off: the VM's packets go through QEMU, which needs no
		// /dev/vhost-net; the MAC is the same in every VM, as the
		// guest's address is.
		args = append(args, "-netdev", "tap,id=net0,vhost=off,fd="+strconv.Itoa(v.tapFD()),
			"-device", "virtio-net-device,netdev=net0,mac="+vmMAC)
	}
	if v.incoming != nil {
		args = append(args, "-incoming", "defer")
	}
	return args
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
	cmd.ExtraFiles = v.extraFiles()
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

// kill kills the QEMU this den started and waits until it has exited. It
// does not look at /proc: right after the start the child's cmdline may
// still be den's (before its exec), which alive() takes for another
// process.
func (p *vmProcess) kill(ctx context.Context) error {
	_ = p.Process.Kill()
	select {
	case err := <-p.exited:
		p.exited <- err
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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
