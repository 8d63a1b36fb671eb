package gvisor

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/envlist"
	"github.com/denhq/den/internal/sandboxnet"
)

// In-sandbox paths of the guest agent. The agent is PID 1.
const (
	guestBinaryPath = "/.den/den-guest"
	guestRunDir     = "/.den/run"
	guestSocketName = "guest.sock"
	defaultPath     = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	cpuPeriodUS     = 100000
)

// capabilities granted to the guest agent (which runs as root and drops to
// the default user for user processes). They are the sentry's capabilities,
// not the host's: Docker's default set plus ptrace and admin, which tools in
// an agent sandbox (debuggers, mount in the sandbox) expect.
var capabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_MKNOD", "CAP_AUDIT_WRITE",
	"CAP_SETFCAP", "CAP_SYS_PTRACE", "CAP_SYS_ADMIN",
}

// ociSpec builds the OCI runtime spec of a sandbox whose guest agent is
// the binary at guestBin, in network nt (nil: loopback only).
func ociSpec(cfg Config, spec driver.Spec, p paths, guestBin string, nt *sandboxnet.Net) *specs.Spec {
	hostname := spec.Hostname
	if hostname == "" {
		hostname = spec.ID
	}
	cwd := spec.Image.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	s := &specs.Spec{
		Version:  specs.Version,
		Hostname: hostname,
		Root:     &specs.Root{Path: p.rootfs()},
		Process: &specs.Process{
			User: specs.User{UID: 0, GID: 0},
			Args: guestArgs(defaultUser(spec), spec.Image.WorkingDir, spec.CPUs),
			Env:  mergeEnv(spec.Image.Env, spec.Env),
			Cwd:  cwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding: capabilities, Effective: capabilities,
				Permitted: capabilities, Inheritable: capabilities,
			},
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1 << 20, Soft: 1 << 20}},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs"},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: guestBinaryPath, Type: "bind", Source: guestBin, Options: []string{"rbind", "ro"}},
			{Destination: guestRunDir, Type: "bind", Source: p.run(), Options: []string{"rbind", "rw"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: cgroupPath(cfg, spec.ID),
			Resources:   resources(cfg, spec),
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace},
				{Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
			},
		},
	}
	if nt != nil {
		// runsc's network stack takes over the namespace's eth0; den's
		// resolver answers the sandbox's DNS.
		s.Linux.Namespaces[1].Path = nt.Netns
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: p.resolvConf(), Options: []string{"rbind", "ro"}})
	}
	return s
}

// defaultUser is the guest agent's default user: the spec's, else the image's.
func defaultUser(spec driver.Spec) string {
	if spec.User != "" {
		return spec.User
	}
	return spec.Image.User
}

// guestArgs is the command line of the guest agent: its default user, the
// image's working directory as the default cwd of processes, and the
// sandbox's CPU limit rounded up (the sandbox shows every host CPU). It does
// not pass --memory-limit-mb: the agent's OOM killer cannot yet contain
// every allocation (see doc.go, Resource limits), so the host cgroup alone
// enforces MemoryMB.
func guestArgs(user, workDir string, cpus float64) []string {
	if user == "" {
		user = "root"
	}
	args := []string{guestBinaryPath, "--listen", "unix:" + guestRunDir + "/" + guestSocketName, "--default-user", user}
	if workDir != "" {
		args = append(args, "--default-dir", workDir)
	}
	if cpus > 0 {
		args = append(args, "--cpus", strconv.Itoa(int(math.Ceil(cpus))))
	}
	return args
}

// cgroupPath is the sandbox's cgroup, relative to each hierarchy's root.
func cgroupPath(cfg Config, id string) string {
	return "/" + strings.Trim(cfg.CgroupParent, "/") + "/" + id
}

// resources are the OCI limits runsc applies to the sandbox cgroup: memory
// and PIDs. The CPU limit is den's to apply once the sandbox runs (see
// cpulimit.go).
func resources(cfg Config, spec driver.Spec) *specs.LinuxResources {
	r := &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: cfg.PidsLimit}}
	if spec.MemoryMB > 0 {
		limit := spec.MemoryMB << 20
		r.Memory = &specs.LinuxMemory{Limit: &limit}
	}
	return r
}

// mergeEnv returns the image env with the spec env applied on top (same key:
// spec wins) and a default PATH when neither sets one.
func mergeEnv(image []string, extra map[string]string) []string {
	env := envlist.Merge(image, extra)
	if !envlist.Has(env, "PATH") {
		env = append(env, defaultPath)
	}
	return env
}

// writeSpec writes spec as config.json into the bundle directory.
func writeSpec(spec *specs.Spec, p paths) error {
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode OCI spec: %w", err)
	}
	if err := os.WriteFile(filepath.Join(p.dir, "config.json"), data, 0o600); err != nil {
		return fmt.Errorf("write OCI spec: %w", err)
	}
	return nil
}
