package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/warmpool"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/fsutil"
	"github.com/denhq/den/internal/pidfd"
	"github.com/denhq/den/internal/sandboxnet"
	"github.com/denhq/den/internal/vmkernel"
)

// Name is the driver name of QEMU sandboxes.
const Name = "qemu"

// stateVersion is the Handle.Version the driver writes and accepts.
const stateVersion = 1

// vmOverheadMB is memory a VM gets beyond its sandbox's limit: the guest
// kernel, initramfs and agent.
const vmOverheadMB = 64

// Config configures a Driver.
type Config struct {
	// StateDir holds sandboxes/<id>/ and the cached root disks. Required.
	StateDir string
	// Kernels holds the guest kernels (den kernel fetch). Required.
	Kernels *vmkernel.Store
	// GuestBinary is a static den-guest; it becomes the initramfs's init.
	// Required.
	GuestBinary string
	// QEMU is qemu-system-x86_64; default from PATH.
	QEMU string
	// Accel is "kvm" or "tcg"; empty: DetectAccel.
	Accel string
	// StartTimeout bounds the wait for the agent after QEMU started.
	// Default 2 minutes (TCG boots take seconds).
	StartTimeout time.Duration
	// MaxBoots bounds the VMs booting at once (a boot is CPU-bound until
	// the agent answers); more Creates wait. Default: the CPU count under
	// TCG, four times it under KVM.
	MaxBoots int
	// WarmPool is how many spare VMs the driver keeps booted for each of
	// the most recently created shapes (see driver.Pooler); 0: only the
	// declared pools' spares.
	WarmPool int
	// Networks gives sandboxes whose Spec asks for a network one (see
	// network.go); nil: no sandbox has a network.
	Networks *sandboxnet.Manager
	Logger   *slog.Logger
}

// Driver runs sandboxes as QEMU microVMs. Like the gVisor driver it keeps
// no per-sandbox memory but the agent channels: everything else is
// derived from the sandbox's directory, so VMs outlive den and a new
// Driver reattaches through Recover.
type Driver struct {
	cfg Config
	log *slog.Logger

	boots chan struct{} // a token per VM booting (Config.MaxBoots)
	// pool keeps booted, unclaimed VMs (pool.go) in spares, this
	// instance's spare directory.
	pool   *warmpool.Pool[spare]
	spares *warmpool.Set

	mu       sync.Mutex
	channels map[string]*channel
}

var (
	_ driver.Driver      = (*Driver)(nil)
	_ driver.Lister      = (*Driver)(nil)
	_ driver.Waiter      = (*Driver)(nil)
	_ driver.StatsReader = (*Driver)(nil)
	_ driver.Suspender   = (*Driver)(nil)
	_ driver.Pooler      = (*Driver)(nil)
)

// New checks cfg, prepares StateDir, destroys the spare VMs of earlier
// instances and starts the warm pool, which Close stops.
func New(cfg Config) (*Driver, error) {
	switch {
	case cfg.StateDir == "" || !filepath.IsAbs(cfg.StateDir):
		return nil, errdefs.New(errdefs.InvalidArgument, "qemu driver config: StateDir must be an absolute path")
	case cfg.Kernels == nil || cfg.GuestBinary == "":
		return nil, errdefs.New(errdefs.InvalidArgument, "qemu driver config: Kernels and GuestBinary are required")
	}
	if cfg.QEMU == "" {
		p, err := exec.LookPath("qemu-system-x86_64")
		if err != nil {
			return nil, errdefs.New(errdefs.FailedPrecondition, "qemu driver: qemu-system-x86_64 not found: apt-get install qemu-system-x86 qemu-utils")
		}
		cfg.QEMU = p
	}
	if cfg.Accel == "" {
		cfg.Accel = DetectAccel()
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 2 * time.Minute
	}
	if cfg.MaxBoots <= 0 {
		cfg.MaxBoots = runtime.NumCPU()
		if cfg.Accel == "kvm" {
			cfg.MaxBoots *= 4
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{"sandboxes", "disks", sparesDirName} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, d), 0o700); err != nil {
			return nil, fmt.Errorf("qemu driver: %w", err)
		}
	}
	d := &Driver{cfg: cfg, log: cfg.Logger.With("driver", Name), boots: make(chan struct{}, cfg.MaxBoots), channels: map[string]*channel{}}
	if err := d.startPool(); err != nil {
		return nil, fmt.Errorf("qemu driver: %w", err)
	}
	return d, nil
}

// DetectAccel is "kvm" on a host with hardware KVM, else "tcg": no
// /dev/kvm, or KVM by PVM (/sys/module/kvm_pvm), on which a stock kernel
// cannot boot.
func DetectAccel() string {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return "tcg"
	}
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		return "tcg"
	}
	for _, m := range []string{"kvm_intel", "kvm_amd"} {
		if _, err := os.Stat("/sys/module/" + m); err == nil {
			return "kvm"
		}
	}
	return "tcg"
}

// Accel is the acceleration the driver's VMs use.
func (d *Driver) Accel() string { return d.cfg.Accel }

// Capabilities implements driver.Driver.
func (d *Driver) Capabilities() driver.Capabilities {
	return driver.Capabilities{Name: Name, Isolation: "vm", List: true, Wait: true, Stats: true, Suspend: true, Pool: true,
		Network: d.cfg.Networks != nil}
}

var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

func checkID(id string) error {
	if !validID.MatchString(id) {
		return errdefs.New(errdefs.InvalidArgument, "invalid sandbox id %q: want 1-128 of [A-Za-z0-9_.-], not starting with a punctuation mark", id)
	}
	return nil
}

func (d *Driver) sandboxDir(id string) string { return filepath.Join(d.cfg.StateDir, "sandboxes", id) }

// Phases of a sandbox in its state.
const (
	phaseRunning   = "" // QEMU runs (or died on its own)
	phaseSuspended = "suspended"
)

// state is den.json in a sandbox's directory and the Handle's State.
type state struct {
	// Phase is phaseRunning or phaseSuspended (no QEMU: its state is in
	// the checkpoint directory Suspend wrote).
	Phase string `json:"phase,omitempty"`
	Dir   string `json:"dir"`
	// AgentSocket is the name in Dir of the socket QEMU serves the agent
	// channel on; empty means agentSocket. Recover moves it.
	AgentSocket string    `json:"agent_socket,omitempty"`
	PID         int       `json:"pid"`
	Accel       string    `json:"accel"`
	Kernel      string    `json:"kernel"`
	BaseDisk    string    `json:"base_disk"`
	MemoryMB    int64     `json:"memory_mb"`
	DiskMB      int64     `json:"disk_mb"`
	StartedAt   time.Time `json:"started_at"`
	// Boot is where the time of the boot went (nil for a restored VM).
	Boot *BootTiming `json:"boot,omitempty"`
	// CPUs is the VM's vCPU count (0 in states written before it was
	// recorded).
	CPUs int `json:"cpus,omitempty"`
	// Memory is the file backing the guest's RAM; empty for a VM started
	// before RAM was file-backed, which cannot be checkpointed.
	Memory string `json:"memory,omitempty"`
	// MemoryPrivate says Memory is mapped share=off: a clone's RAM, a
	// copy-on-write mapping of its checkpoint's memory file, which
	// therefore does not hold the VM's RAM (see suspend.go).
	MemoryPrivate bool `json:"memory_private,omitempty"`
	// Network says the VM has a NIC (on the tap of its sandbox network):
	// a restore of it must have one too.
	Network bool `json:"network,omitempty"`
}

func readState(dir string) (state, error) {
	var st state
	data, err := os.ReadFile(filepath.Join(dir, "den.json"))
	if errors.Is(err, os.ErrNotExist) {
		return st, errdefs.New(errdefs.NotFound, "sandbox state %s not found", dir)
	}
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(data, &st)
}

func writeState(dir string, st state) ([]byte, error) {
	data, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	// A temporary file of its own: two writers never share one.
	return data, fsutil.ReplaceFile(filepath.Join(dir, "den.json"), data, 0o600)
}

// alive reports whether pid is a running QEMU of this sandbox directory:
// one whose working directory it is. QEMU runs in its VM's directory
// (vm.start), and that holds when the directory is renamed, as a claimed
// spare's is (pool.go).
func alive(pid int, dir string) bool {
	if pid <= 0 {
		return false
	}
	cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
	if err != nil {
		return false // gone, or a zombie
	}
	if cwd != dir {
		if real, err := filepath.EvalSymlinks(dir); err != nil || real != cwd {
			return false
		}
	}
	stat, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if i := strings.LastIndexByte(string(stat), ')'); i > 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
		return false // a zombie
	}
	return true
}

// agentSocket is the agent channel's socket in a VM's directory as QEMU
// starts.
const agentSocket = "agent.sock"

// channel returns sandbox id's agent channel, on the socket its state
// names.
func (d *Driver) channel(id string) *channel { return d.channelAt(id, d.sandboxDir(id)) }

// channelAt returns the agent channel of the VM id in directory dir (a
// sandbox's, or a spare's), on the socket its state names.
func (d *Driver) channelAt(id, dir string) *channel {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.channels[id]
	if c == nil {
		name := agentSocket
		if st, err := readState(dir); err == nil && st.AgentSocket != "" {
			name = st.AgentSocket
		}
		c = &channel{path: filepath.Join(dir, name)}
		d.channels[id] = c
	}
	return c
}

// moveChannel hands VM from's channel, session and all, to VM to, whose
// directory (from's, renamed) is dir: the session's connection is to the
// socket's inode, which the rename does not touch.
func (d *Driver) moveChannel(from, to, dir string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.channels[from]
	delete(d.channels, from)
	if old := d.channels[to]; old != nil {
		old.close()
		delete(d.channels, to)
	}
	if c == nil {
		return
	}
	c.mu.Lock()
	moved := &channel{path: filepath.Join(dir, filepath.Base(c.path)), sess: c.sess}
	c.sess = nil
	c.mu.Unlock()
	d.channels[to] = moved
}

func (d *Driver) dropChannel(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c := d.channels[id]; c != nil {
		c.close()
		delete(d.channels, id)
	}
}

// Recover implements driver.Driver.
func (d *Driver) Recover(ctx context.Context, h *driver.Handle) error {
	if h.Version != stateVersion {
		return errdefs.New(errdefs.FailedPrecondition, "recover sandbox %s: unknown state version %d", h.ID, h.Version)
	}
	if err := checkID(h.ID); err != nil {
		return err
	}
	dir := d.sandboxDir(h.ID)
	st, err := readState(dir)
	if err != nil {
		return err
	}
	if st.Phase == phaseSuspended {
		return nil
	}
	if !alive(st.PID, st.Dir) {
		return errdefs.New(errdefs.NotFound, "recover sandbox %s: its VM is gone", h.ID)
	}
	return d.takeChannel(ctx, h.ID, dir, st)
}

// takeChannel moves the VM's agent channel to a new socket, so this
// driver owns it: QEMU serves one client per socket, and the den before
// a restart may still hold the old one (it hung rather than died, or it
// is an abandoned instance in this process). QEMU drops the old client;
// the agent sees its session end and takes the next.
func (d *Driver) takeChannel(ctx context.Context, id, dir string, st state) error {
	name := "agent-" + strconv.FormatInt(time.Now().UnixNano(), 36) + ".sock"
	backend := map[string]any{"type": "socket", "data": map[string]any{
		"addr":   map[string]any{"type": "unix", "data": map[string]any{"path": name}},
		"server": true, "wait": false,
	}}
	if err := qmpDo(ctx, dir, "chardev-change", map[string]any{"id": "agent", "backend": backend}, nil); err != nil {
		return fmt.Errorf("recover sandbox %s: take over the agent channel: %w", id, err)
	}
	old := st.AgentSocket
	if old == "" {
		old = agentSocket
	}
	st.AgentSocket = name
	if _, err := writeState(dir, st); err != nil {
		return fmt.Errorf("recover sandbox %s: %w", id, err)
	}
	_ = os.Remove(filepath.Join(dir, old))
	d.dropChannel(id)
	return d.waitHealthy(ctx, id)
}

// recoverTimeout bounds the wait for the agent after the channel moved.
const recoverTimeout = 30 * time.Second

// waitHealthy polls the agent's /health until it answers. Right after the
// channel moved the guest may still hold its old session, which the first
// bytes of the new one end; the agent then opens the port again.
func (d *Driver) waitHealthy(ctx context.Context, id string) error {
	deadline := time.Now().Add(recoverTimeout)
	for {
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := guestRequest(hctx, d.channel(id), http.MethodGet, "/health", nil, http.StatusOK, http.StatusNoContent)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return errdefs.Wrap(errdefs.Unavailable, err, "recover sandbox %s: the agent did not answer on its new channel", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Status implements driver.Driver.
func (d *Driver) Status(ctx context.Context, id string) (driver.Status, error) {
	if err := checkID(id); err != nil {
		return driver.Status{}, err
	}
	st, err := readState(d.sandboxDir(id))
	if err != nil {
		return driver.Status{}, err
	}
	if st.Phase == phaseSuspended || !alive(st.PID, st.Dir) {
		return d.stoppedStatus(id)
	}
	return driver.Status{Running: true, StartedAt: st.StartedAt}, nil
}

// DialGuest implements driver.Driver.
func (d *Driver) DialGuest(ctx context.Context, id string) (net.Conn, error) {
	s, err := d.Status(ctx, id)
	if err != nil {
		return nil, err
	}
	if !s.Running {
		return nil, errdefs.New(errdefs.Unavailable, "dial guest of sandbox %s: its VM is not running", id)
	}
	return d.channel(id).dial(ctx)
}

// Destroy implements driver.Driver: kill QEMU, remove the directory.
func (d *Driver) Destroy(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	d.dropChannel(id)
	if err := destroyVMDir(ctx, d.sandboxDir(id)); err != nil {
		return fmt.Errorf("destroy sandbox %s: %w", id, err)
	}
	if err := d.teardownNetwork(id); err != nil {
		return fmt.Errorf("destroy sandbox %s: %w", id, err)
	}
	return nil
}

// killVM kills QEMU pid (when it is this directory's) and waits until it
// has exited, through a pidfd: only then are its files closed and the
// disk image's lock released (its /proc cmdline reads empty earlier, while
// it still tears down its memory).
func killVM(ctx context.Context, pid int, dir string) error {
	if !alive(pid, dir) {
		return nil
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	if !alive(pid, dir) { // the pid was reused between the check and the open
		return nil
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill qemu %d: %w", pid, err)
	}
	return pidfd.Wait(ctx, fd, 5*time.Millisecond, nil)
}

func readPidFile(p string) (int, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

// List implements driver.Lister.
func (d *Driver) List(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(d.cfg.StateDir, "sandboxes"))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Close implements driver.Driver: sandboxes' VMs keep running, spares
// are destroyed (nothing else records them).
func (d *Driver) Close() error {
	d.pool.Close()
	err := d.spares.Release()
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, c := range d.channels {
		c.close()
		delete(d.channels, id)
	}
	return err
}

// shortHash is a short hex sha256 of parts.
func shortHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}
