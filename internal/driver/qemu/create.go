package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/warmpool"
	"github.com/denhq/den/internal/errdefs"
)

// creation is one Create in progress.
type creation struct {
	d         *Driver
	spec      driver.Spec
	dir       string
	kernel    string // version
	image     string // kernel image
	initramfs string
	base      string // the cached root disk
	pid       int
	proc      *vmProcess // the QEMU this Create started
	raw       []byte     // the encoded state
	booting   bool       // holds a boot slot
	launched  time.Time  // when the boot slot was taken and QEMU started
	boot      *BootTiming
	// tap is the VM's NIC (network.go), open from setupNetwork until
	// releaseTap; nil: the VM has none.
	tap *os.File
}

// createSteps build and boot a VM.
var createSteps = []step[*creation]{
	{"find the guest kernel", (*creation).findKernel},
	{"prepare the root disk", (*creation).prepareBase},
	{"make sandbox dir", (*creation).makeDir},
	{"create the disk overlay", (*creation).createOverlay},
	{"set up the network", (*creation).setupNetwork},
	{"wait for a boot slot", (*creation).acquireBoot},
	{"start qemu", (*creation).startQEMU},
	{"write state", (*creation).writeState},
	{"wait for the guest agent", (*creation).waitAgent},
	{"end the boot", (*creation).releaseBoot},
	{"release the tap", (*creation).releaseTap},
	{"apply env and hostname", (*creation).initGuest},
}

// Create implements driver.Driver. It claims a spare VM of spec's shape
// when the warm pool has one (pool.go), else it boots one; either way the
// shape becomes the pool's most recently used one.
func (d *Driver) Create(ctx context.Context, spec driver.Spec) (*driver.Handle, error) {
	if err := checkID(spec.ID); err != nil {
		return nil, err
	}
	switch {
	case len(spec.Image.Layers) == 0:
		return nil, errdefs.New(errdefs.InvalidArgument, "create sandbox %s: the image has no layers", spec.ID)
	case spec.MemoryMB <= 0 || spec.DiskMB <= 0 || spec.CPUs <= 0:
		return nil, errdefs.New(errdefs.InvalidArgument, "create sandbox %s: cpus, memory and disk must be positive", spec.ID)
	case spec.UpperDir != "":
		return nil, errdefs.New(errdefs.InvalidArgument, "create sandbox %s: the qemu runtime cannot capture an upper dir", spec.ID)
	}
	dir := d.sandboxDir(spec.ID)
	if st, err := readState(dir); err == nil {
		if alive(st.PID, st.Dir) {
			raw, _ := json.Marshal(st)
			return &driver.Handle{ID: spec.ID, Driver: Name, Version: stateVersion, State: raw}, nil
		}
		return nil, errdefs.New(errdefs.FailedPrecondition, "create sandbox %s: a sandbox with this id exists and is not running; destroy it first", spec.ID)
	}
	sh := warmpool.ShapeOf(spec)
	h, err := d.claim(ctx, spec, sh)
	if h == nil && err == nil {
		h, err = d.createCold(ctx, spec, dir)
	}
	if err != nil {
		return nil, err
	}
	d.pool.Use(sh)
	return h, nil
}

// Claim implements driver.Claimer: Create from a spare only.
func (d *Driver) Claim(ctx context.Context, spec driver.Spec) (*driver.Handle, error) {
	if err := checkID(spec.ID); err != nil {
		return nil, err
	}
	if len(spec.Image.Layers) == 0 || spec.MemoryMB <= 0 || spec.DiskMB <= 0 || spec.CPUs <= 0 || spec.UpperDir != "" {
		return nil, nil // Create says what is wrong
	}
	if _, err := readState(d.sandboxDir(spec.ID)); err == nil {
		return d.Create(ctx, spec) // an existing ID: Create answers
	}
	sh := warmpool.ShapeOf(spec)
	h, err := d.claim(ctx, spec, sh)
	if h != nil {
		d.pool.Use(sh)
	}
	return h, err
}

// createCold boots the sandbox's VM.
func (d *Driver) createCold(ctx context.Context, spec driver.Spec, dir string) (*driver.Handle, error) {
	c := &creation{d: d, spec: spec, dir: dir}
	begin := time.Now()
	if err := runSteps(ctx, d.log, "create sandbox", spec.ID, c, createSteps); err != nil {
		return nil, err
	}
	if b := c.boot; b != nil {
		d.log.Info("sandbox created", "sandbox", spec.ID, "accel", d.cfg.Accel, "took", time.Since(begin),
			"qemu_start", b.QEMUStart, "firmware", b.Firmware, "kernel", b.Kernel, "init", b.Init, "agent", b.Agent)
	} else {
		d.log.Info("sandbox created", "sandbox", spec.ID, "accel", d.cfg.Accel, "took", time.Since(begin))
	}
	return &driver.Handle{ID: spec.ID, Driver: Name, Version: stateVersion, State: c.raw}, nil
}

func (c *creation) findKernel(ctx context.Context) (func(context.Context) error, error) {
	k, err := c.d.cfg.Kernels.Get("")
	if err != nil {
		return nil, errdefs.Wrap(errdefs.FailedPrecondition, err, "no guest kernel")
	}
	initrd, err := c.d.cfg.Kernels.Initramfs(k, c.d.cfg.GuestBinary)
	if err != nil {
		return nil, err
	}
	c.kernel, c.image, c.initramfs = k.Version, k.Image(), initrd
	return nil, nil
}

// prepareBase makes (once per image and disk size) the read-only root
// disk: the image's layers merged by a read-only overlayfs mount and
// written into an ext4 file of the sandbox's disk size with mkfs.ext4 -d.
// The disk size is the quota: the guest's file system cannot grow past it.
func (c *creation) prepareBase(ctx context.Context) (func(context.Context) error, error) {
	key := shortHash(append([]string{strconv.FormatInt(c.spec.DiskMB, 10)}, c.spec.Image.Layers...)...)
	c.base = filepath.Join(c.d.cfg.StateDir, "disks", key+".ext4")
	if _, err := os.Stat(c.base); err == nil {
		return nil, nil
	}
	src := c.spec.Image.Layers[0]
	if len(c.spec.Image.Layers) > 1 {
		mnt, err := os.MkdirTemp(filepath.Join(c.d.cfg.StateDir, "disks"), ".merge-")
		if err != nil {
			return nil, err
		}
		defer os.Remove(mnt)
		if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(c.spec.Image.Layers, ":")); err != nil {
			return nil, fmt.Errorf("merge the image's layers: %w", err)
		}
		defer unix.Unmount(mnt, unix.MNT_DETACH)
		src = mnt
	}
	tmp := c.base + ".tmp-" + c.spec.ID
	defer os.Remove(tmp)
	cmd := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-d", src, "-L", "root", "-E", "root_owner=0:0", tmp, strconv.FormatInt(c.spec.DiskMB, 10)+"M")
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "write the root disk (%d MiB; is the image larger?): %s", c.spec.DiskMB, bytes.TrimSpace(out))
	}
	return nil, os.Rename(tmp, c.base)
}

// acquireBoot waits for one of the driver's boot slots (see
// Config.MaxBoots): a boot is CPU-bound, and boots that share too few CPUs
// all slow down until they look stalled.
func (c *creation) acquireBoot(ctx context.Context) (func(context.Context) error, error) {
	select {
	case c.d.boots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c.booting, c.launched = true, time.Now()
	return func(context.Context) error { c.freeBootSlot(); return nil }, nil
}

// releaseBoot gives the boot slot back once the agent answers, and
// records where the boot's time went in the state.
func (c *creation) releaseBoot(context.Context) (func(context.Context) error, error) {
	c.freeBootSlot()
	if c.boot == nil {
		return nil, nil
	}
	st, err := readState(c.dir)
	if err != nil {
		return nil, err
	}
	st.Boot = c.boot
	c.raw, err = writeState(c.dir, st)
	return nil, err
}

func (c *creation) freeBootSlot() {
	if c.booting {
		c.booting = false
		<-c.d.boots
	}
}

func (c *creation) makeDir(ctx context.Context) (func(context.Context) error, error) {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return nil, err
	}
	return func(context.Context) error { return os.RemoveAll(c.dir) }, nil
}

func (c *creation) createOverlay(ctx context.Context) (func(context.Context) error, error) {
	out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-b", c.base, "-F", "raw", c.disk()).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("qemu-img create: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil, nil
}

func (c *creation) disk() string { return filepath.Join(c.dir, "disk.qcow2") }

func (c *creation) vm() vm {
	args := []string{"--listen", "vport:" + AgentPort}
	user := c.spec.User
	if user == "" {
		user = c.spec.Image.User
	}
	if user != "" {
		args = append(args, "--default-user", user)
	}
	if c.spec.Image.WorkingDir != "" {
		args = append(args, "--default-dir", c.spec.Image.WorkingDir)
	}
	v := vm{qemu: c.d.cfg.QEMU, accel: c.d.cfg.Accel, kernel: c.image, initramfs: c.initramfs, disk: c.disk(), dir: c.dir,
		memoryMB: c.spec.MemoryMB + vmOverheadMB, cpus: c.spec.CPUs, memory: memoryName, memShared: true, agentArgs: args}
	if c.tap != nil {
		v.tap, v.netArg = c.tap, c.d.netArg()
	}
	return v
}

func (c *creation) startQEMU(ctx context.Context) (func(context.Context) error, error) {
	p, err := c.vm().start()
	if err != nil {
		return nil, err
	}
	c.pid, c.proc = p.Pid, p
	return func(ctx context.Context) error { return c.proc.kill(ctx) }, nil // c.proc: a restart replaces it
}

// restart kills the VM and starts it again, and records the new QEMU.
func (c *creation) restart(ctx context.Context) error {
	if err := c.proc.kill(ctx); err != nil {
		return err
	}
	c.d.dropChannel(c.spec.ID)
	_ = os.Remove(filepath.Join(c.dir, "console.log"))
	_ = os.Remove(filepath.Join(c.dir, memoryName)) // the stalled boot's RAM
	p, err := c.vm().start()
	if err != nil {
		return err
	}
	c.pid, c.proc = p.Pid, p
	_, err = c.writeState(ctx)
	return err
}

func (c *creation) writeState(ctx context.Context) (func(context.Context) error, error) {
	st := state{Dir: c.dir, PID: c.pid, Accel: c.d.cfg.Accel, Kernel: c.kernel, BaseDisk: c.base,
		MemoryMB: c.spec.MemoryMB, DiskMB: c.spec.DiskMB, CPUs: vcpus(c.spec.CPUs), Memory: filepath.Join(c.dir, memoryName),
		StartedAt: time.Now().UTC(), Network: c.tap != nil}
	raw, err := writeState(c.dir, st)
	c.raw = raw
	return nil, err
}

// bootStall is how long a boot may print nothing on the console before
// it is taken as stalled and started again. Under TCG here about one boot
// in five spins before its first console line, waiting for a timer tick
// that never comes (interrupts on, a loop on a memory word); a healthy
// boot prints within a second.
const bootStall = 15 * time.Second

// maxBootAttempts bounds the restarts of stalled boots.
const maxBootAttempts = 4

// waitAgent polls the agent's /health over the channel until it answers,
// QEMU exits, ctx ends or StartTimeout passes. A boot that stalls before
// its first console line is restarted (see bootStall).
func (c *creation) waitAgent(ctx context.Context) (func(context.Context) error, error) {
	deadline := time.Now().Add(c.d.cfg.StartTimeout)
	ch := c.d.channelAt(c.spec.ID, c.dir)
	attempt, booted := 1, time.Now()
	watch := watchBoot(c.dir, c.launched)
	defer func() {
		if watch != nil {
			watch.abandon()
		}
	}()
	for {
		if fi, err := os.Stat(filepath.Join(c.dir, "console.log")); (err != nil || fi.Size() == 0) && time.Since(booted) > bootStall && attempt < maxBootAttempts {
			c.d.log.Warn("VM boot stalled before its first console line; starting it again", "sandbox", c.spec.ID, "attempt", attempt)
			watch.abandon()
			watch = nil
			if err := c.restart(ctx); err != nil {
				return nil, err
			}
			attempt, booted, ch = attempt+1, time.Now(), c.d.channelAt(c.spec.ID, c.dir)
			watch = watchBoot(c.dir, booted)
		}
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := guestRequest(hctx, ch, http.MethodGet, "/health", nil, http.StatusOK, http.StatusNoContent)
		cancel()
		if err == nil {
			t := watch.end()
			watch, c.boot = nil, &t
			return nil, nil
		}
		// Our own child's exit, not alive(): right after the start its
		// /proc cmdline may still be the parent's (before exec).
		if c.proc.exitStatus() != "" {
			console, _ := os.ReadFile(filepath.Join(c.dir, "console.log"))
			qlog, _ := os.ReadFile(filepath.Join(c.dir, "qemu.log"))
			return nil, errdefs.New(errdefs.Unavailable, "the VM stopped before its agent answered (qemu: %s); console: %s; qemu log: %s", c.proc.exitStatus(), tail(console), tail(qlog))
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Now().After(deadline) {
			console, _ := os.ReadFile(filepath.Join(c.dir, "console.log"))
			return nil, errdefs.New(errdefs.Unavailable, "the agent did not answer within %s: %v; console: %s", c.d.cfg.StartTimeout, err, tail(console))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// initGuest sends the image's and the spec's env and the hostname to the
// agent (POST /init): the VM's init has only a minimal environment.
func (c *creation) initGuest(ctx context.Context) (func(context.Context) error, error) {
	env := map[string]string{"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, kv := range c.spec.Image.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	for k, v := range c.spec.Env {
		env[k] = v
	}
	hostname := c.spec.Hostname
	if hostname == "" {
		hostname = c.spec.ID
	}
	body, _ := json.Marshal(map[string]any{"env": env, "hostname": hostname})
	return nil, guestRequest(ctx, c.d.channelAt(c.spec.ID, c.dir), http.MethodPost, "/init", body, http.StatusNoContent)
}

// guestRequest sends one request to the agent over ch and checks the status.
func guestRequest(ctx context.Context, ch *channel, method, path string, body []byte, want ...int) error {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return ch.dial(ctx) }, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, method, "http://guest"+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	for _, w := range want {
		if resp.StatusCode == w {
			return nil
		}
	}
	return errdefs.New(errdefs.Unavailable, "guest %s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(msg))
}

// tail is the end of a log, for errors.
func tail(b []byte) string {
	const n = 1500
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(bytes.TrimSpace(b))
}
