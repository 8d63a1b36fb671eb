//go:build linux

// Package vminit is den-guest as the init (PID 1) of a microVM, started
// by the kernel from den's initramfs (see internal/vmkernel). It mounts
// the kernel file systems, loads the modules the initramfs lists, mounts
// the root disk, switches to it, brings up lo and, when the kernel command
// line has NetArg, eth0, and execs den-guest's agent mode with the
// arguments the kernel command line gives init (those after "--").
//
// The steps run in order and each failure is printed on the console
// (the kernel then panics when init exits, which the driver sees as the
// VM stopping).
package vminit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// InitPath is argv[0] of init in den's initramfs.
const InitPath = "/init"

// configPath is the initramfs's VMConfig (vmkernel.VMConfig).
const configPath = "/etc/den-vm.json"

// rootWait bounds the wait for the root disk to appear.
const rootWait = 30 * time.Second

// StartMarker starts the line init prints on the console first:
// "den-vm: init uptime=<seconds>", the time since the kernel started.
const StartMarker = "den-vm: init"

// ReadyMarker starts the line init prints on the console just before it
// starts the agent: "den-vm: ready kernel=<release> root=<device>
// uptime=<seconds>". The host reads the boot's steps from the two.
const ReadyMarker = "den-vm: ready"

// config is the part of vmkernel.VMConfig init reads.
type config struct {
	Modules []string `json:"modules"`
}

// step is one named stage of the boot.
type step struct {
	name string
	do   func(*boot) error
}

// boot is the state of one boot.
type boot struct {
	console io.Writer
	cfg     config
	root    string     // the root disk's device
	net     *netConfig // from NetArg; nil: no NIC
	args    []string
}

var steps = []step{
	{"mount kernel file systems", (*boot).mountKernelFS},
	{"read config", (*boot).readConfig},
	{"load modules", (*boot).loadModules},
	{"wait for the root disk", (*boot).waitRoot},
	{"mount the root disk", (*boot).mountRoot},
	{"switch root", (*boot).switchRoot},
	{"populate /dev", (*boot).populateDev},
	{"bring up the loopback interface", (*boot).loopbackUp},
	{"configure the network", (*boot).networkUp},
	{"raise the open-file limit", (*boot).raiseFileLimit},
}

// Run boots the VM and execs the agent with args (init's arguments). It
// returns only on failure.
func Run(args []string) error {
	b := &boot{console: os.Stdout, root: "/dev/vda", args: args}
	fmt.Fprintf(b.console, "%s uptime=%.3f\n", StartMarker, uptime())
	for _, s := range steps {
		if err := s.do(b); err != nil {
			return fmt.Errorf("den-vm: %s: %w", s.name, err)
		}
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	fmt.Fprintf(b.console, "%s kernel=%s root=%s uptime=%.3f\n", ReadyMarker, unix.ByteSliceToString(uts.Release[:]), b.root, uptime())
	argv := append([]string{"den-guest"}, b.args...)
	return fmt.Errorf("den-vm: exec the agent: %w", unix.Exec("/proc/self/exe", argv, os.Environ()))
}

// fileLimit is the RLIMIT_NOFILE, soft and hard, of the agent and the
// processes it starts: the one den's gVisor sandboxes have (see
// gvisor's bundle), and Docker's default, where the kernel gives init 1024
// and 4096. The agent's processes get its limits as they are.
const fileLimit = 1 << 20

// A kernel whose fs.nr_open is lower keeps its own limits: the boot goes on.
func (b *boot) raiseFileLimit() error {
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: fileLimit, Max: fileLimit}); err != nil {
		fmt.Fprintf(b.console, "den-vm: open-file limit left as it is: %v\n", err)
	}
	return nil
}

func (b *boot) mountKernelFS() error {
	for _, m := range []struct{ src, dst, fstype string }{
		{"devtmpfs", "/dev", "devtmpfs"},
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
	} {
		if err := unix.Mount(m.src, m.dst, m.fstype, unix.MS_NOSUID, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	return nil
}

func (b *boot) readConfig() error {
	data, err := os.ReadFile(configPath)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, &b.cfg); err != nil {
		return fmt.Errorf("%s: %w", configPath, err)
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	for _, f := range strings.Fields(string(cmdline)) {
		if f == "--" {
			break // init's arguments follow
		}
		if v, ok := strings.CutPrefix(f, "den.root="); ok {
			b.root = v
		}
		if v, ok := strings.CutPrefix(f, NetArg+"="); ok {
			if b.net, err = parseNetArg(v); err != nil {
				return err
			}
		}
	}
	return nil
}

// loadModules loads each module file with finit_module; one already
// loaded (or built in) is fine.
func (b *boot) loadModules() error {
	for _, m := range b.cfg.Modules {
		if strings.ContainsAny(m, "/") {
			return fmt.Errorf("bad module name %q", m)
		}
		f, err := os.Open("/lib/modules/" + m + ".ko")
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("load %s: %w", m, err)
		}
	}
	return nil
}

// waitRoot waits for the root disk's device node (devtmpfs adds it once
// virtio-blk probed the disk).
func (b *boot) waitRoot() error {
	deadline := time.Now().Add(rootWait)
	for {
		if _, err := os.Stat(b.root); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %s", b.root, rootWait)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (b *boot) mountRoot() error {
	if err := unix.Mount(b.root, "/newroot", "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount %s: %w", b.root, err)
	}
	return nil
}

// switchRoot moves the kernel file systems into the root disk, makes it
// "/" and leaves the initramfs behind (its memory stays: the agent runs
// from the initramfs's binary, through /proc/self/exe).
func (b *boot) switchRoot() error {
	for _, d := range []string{"/dev", "/proc", "/sys"} {
		target := "/newroot" + d
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(d, target, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s: %w", d, err)
		}
	}
	if err := unix.Chdir("/newroot"); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move the root disk to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	return unix.Chdir("/")
}

// populateDev makes /dev what programs expect of a Linux system, as a
// container runtime or systemd does: devpts for terminals (a PTY is
// opened through /dev/ptmx, which needs a devpts at /dev/pts), a tmpfs
// at /dev/shm, and the /dev/fd and std* links.
func (b *boot) populateDev() error {
	for _, m := range []struct{ src, dst, fstype, opts string }{
		{"devpts", "/dev/pts", "devpts", "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		{"shm", "/dev/shm", "tmpfs", "mode=1777"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, unix.MS_NOSUID|unix.MS_NOEXEC, m.opts); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	for link, target := range map[string]string{
		"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
		"/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, link); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("link %s: %w", link, err)
		}
	}
	return nil
}

// uptime is the seconds since the kernel started (CLOCK_BOOTTIME).
func uptime() float64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return 0
	}
	return float64(ts.Nano()) / 1e9
}

// loopbackUp brings up lo, as every Linux init does (the kernel then gives
// it 127.0.0.1 and ::1): servers in the sandbox listen on localhost.
func (b *boot) loopbackUp() error { return linkUp("lo") }
