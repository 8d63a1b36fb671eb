package gvisor

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/sandboxnet"
)

// Platforms runsc can use on this kind of host. KVM is left out on purpose:
// it hangs on hosts without hardware virtualization for the sentry.
const (
	PlatformSystrap = "systrap"
	PlatformPtrace  = "ptrace"
)

// Config configures a Driver.
type Config struct {
	// RunscPath is the runsc binary. Required.
	RunscPath string
	// GuestBinary is the host path of a static den-guest binary; it is
	// bind-mounted read-only at /.den/den-guest in every sandbox. Required.
	GuestBinary string
	// StateDir holds all per-sandbox directories and runsc's --root. It must
	// be on a filesystem that can hold an overlayfs upper directory (not
	// overlayfs itself). Required.
	StateDir string
	// Platform is "systrap" or "ptrace". Empty means: probe systrap once in
	// New and fall back to ptrace when it does not work.
	Platform string
	// CgroupParent is the cgroup under which each sandbox gets <parent>/<id>.
	// Default "den/<first 8 hex digits of sha256(StateDir)>": stable across
	// restarts, and distinct for two den instances (or tests) on one host
	// that use the same sandbox IDs.
	CgroupParent string
	// PidsLimit bounds the host tasks (sentry threads, gofer, platform stub
	// processes) of one sandbox. Default 4096.
	PidsLimit int64
	// StartTimeout bounds the wait for the guest agent to answer after runsc
	// started, in addition to the Create context. Default 30s.
	StartTimeout time.Duration
	// Networks gives sandboxes whose Spec asks for one a network (runsc
	// --network=sandbox in the network's namespace). Nil: sandboxes have
	// loopback only.
	Networks *sandboxnet.Manager
	// WarmPool is how many started, never-used spare sandboxes the driver
	// keeps per shape (image, user, working dir, image env, CPUs, memory,
	// disk), for the 2 most recently created shapes; Create claims one in
	// milliseconds instead of starting runsc. 0 (the default) turns the
	// pool off. Spares cost their memory while they wait.
	WarmPool int
	// WarmupScript is run with /bin/sh -c in every new spare before it can
	// be claimed, to warm its caches (see DefaultWarmupScript). It must
	// leave no trace a user could see. Empty: no warm-up.
	WarmupScript string
	// MaxColdStarts bounds how many cold sandbox starts run at once; more
	// wait their turn (honouring their context). A burst of starts on few
	// CPUs then finishes one by one instead of all slowing down together
	// until clients time out. Default 2 per CPU.
	MaxColdStarts int
	// HostSettings is the policy for host kernel settings that gVisor's
	// speed depends on (hostsettings.go), applied in New and passed to
	// runsc as --host-settings: "adjust" (the default: set them to
	// gVisor's recommendation where they differ, best effort), "enforce"
	// (as adjust, but New and starts fail when one cannot be set), "check"
	// (log only) or "ignore". The one that matters most is transparent
	// huge pages for shmem (shmem_enabled=advise): a sandbox's memory is a
	// memory file, and restoring 256 MiB of a process's memory takes about
	// twice as long in 4 KiB pages (docs/benchmarks.md).
	HostSettings string
	// Debug turns on runsc debug logs in each sandbox directory.
	Debug bool
	// Logger receives driver logs. Default: slog.Default().
	Logger *slog.Logger
}

// HostSettingsAdjust is the default HostSettings.
const HostSettingsAdjust = "adjust"

// HostSettingsPolicies are the values HostSettings takes ("" is adjust).
var HostSettingsPolicies = []string{HostSettingsAdjust, "enforce", "check", "ignore"}

// withDefaults returns c with empty optional fields filled in.
func (c Config) withDefaults() Config {
	if c.CgroupParent == "" {
		sum := sha256.Sum256([]byte(c.StateDir))
		c.CgroupParent = "den/" + hex.EncodeToString(sum[:4])
	}
	if c.PidsLimit == 0 {
		c.PidsLimit = 4096
	}
	if c.MaxColdStarts == 0 {
		c.MaxColdStarts = 2 * runtime.NumCPU()
	}
	if c.HostSettings == "" {
		c.HostSettings = HostSettingsAdjust
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate checks c. All errors are InvalidArgument.
func (c Config) Validate() error {
	for _, f := range []struct{ name, path string }{
		{"RunscPath", c.RunscPath}, {"GuestBinary", c.GuestBinary},
	} {
		if f.path == "" {
			return errdefs.New(errdefs.InvalidArgument, "gvisor config: %s is required", f.name)
		}
		if _, err := os.Stat(f.path); err != nil {
			return errdefs.Wrap(errdefs.InvalidArgument, err, "gvisor config: %s", f.name)
		}
	}
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		return errdefs.New(errdefs.InvalidArgument, "gvisor config: StateDir must be an absolute path, got %q", c.StateDir)
	}
	switch c.Platform {
	case "", PlatformSystrap, PlatformPtrace:
	default:
		return errdefs.New(errdefs.InvalidArgument, "gvisor config: unsupported platform %q (want systrap or ptrace)", c.Platform)
	}
	if c.HostSettings != "" && !slices.Contains(HostSettingsPolicies, c.HostSettings) {
		return errdefs.New(errdefs.InvalidArgument, "gvisor config: unknown host settings policy %q (want one of %s)", c.HostSettings, strings.Join(HostSettingsPolicies, ", "))
	}
	if c.PidsLimit < 0 {
		return errdefs.New(errdefs.InvalidArgument, "gvisor config: PidsLimit must not be negative")
	}
	if c.MaxColdStarts < 0 {
		return errdefs.New(errdefs.InvalidArgument, "gvisor config: MaxColdStarts must not be negative")
	}
	if c.WarmPool < 0 {
		return errdefs.New(errdefs.InvalidArgument, "gvisor config: WarmPool must not be negative")
	}
	return nil
}
