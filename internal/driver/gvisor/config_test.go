package gvisor

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
)

func TestConfigValidate(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "missing")
	exe := "/bin/sh"
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no runsc", Config{GuestBinary: exe, StateDir: "/x"}, "gvisor config: RunscPath is required"},
		{"missing guest", Config{RunscPath: exe, GuestBinary: bin, StateDir: "/x"}, "gvisor config: GuestBinary: stat " + bin + ": no such file or directory"},
		{"relative state dir", Config{RunscPath: exe, GuestBinary: exe, StateDir: "state"}, `gvisor config: StateDir must be an absolute path, got "state"`},
		{"kvm", Config{RunscPath: exe, GuestBinary: exe, StateDir: "/x", Platform: "kvm"}, `gvisor config: unsupported platform "kvm" (want systrap or ptrace)`},
		{"negative pids", Config{RunscPath: exe, GuestBinary: exe, StateDir: "/x", PidsLimit: -1}, "gvisor config: PidsLimit must not be negative"},
		{"negative warm pool", Config{RunscPath: exe, GuestBinary: exe, StateDir: "/x", WarmPool: -1}, "gvisor config: WarmPool must not be negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if errdefs.KindOf(err) != errdefs.InvalidArgument || err.Error() != tc.want {
				t.Fatalf("Validate() = %v (kind %v), want InvalidArgument %q", err, errdefs.KindOf(err), tc.want)
			}
		})
	}
	if err := (Config{RunscPath: exe, GuestBinary: exe, StateDir: "/x"}).Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "PATH=/img"}, map[string]string{"A": "2", "C": "3", "B": "4"})
	want := []string{"A=2", "PATH=/img", "B=4", "C=3"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mergeEnv (-want +got):\n%s", diff)
	}
	if got := mergeEnv(nil, nil); !cmp.Equal(got, []string{defaultPath}) {
		t.Errorf("mergeEnv(nil, nil) = %q, want the default PATH", got)
	}
}

func TestOCISpec(t *testing.T) {
	cfg := Config{GuestBinary: "/opt/den-guest", StateDir: "/s", CgroupParent: "den"}.withDefaults()
	p := paths{dir: "/s/sandboxes/sb1"}
	s := ociSpec(cfg, driver.Spec{ID: "sb1", CPUs: 1.5, MemoryMB: 256, Image: driver.Image{User: "user"}}, p)
	if s.Hostname != "sb1" || s.Root.Path != "/s/sandboxes/sb1/rootfs" || s.Linux.CgroupsPath != "/den/sb1" {
		t.Errorf("hostname %q root %q cgroup %q", s.Hostname, s.Root.Path, s.Linux.CgroupsPath)
	}
	wantArgs := []string{"/.den/den-guest", "--listen", "unix:/.den/run/guest.sock", "--default-user", "user"}
	if diff := cmp.Diff(wantArgs, s.Process.Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	r := s.Linux.Resources
	if *r.Memory.Limit != 256<<20 || *r.CPU.Quota != 150000 || *r.CPU.Period != 100000 || r.Pids.Limit != 4096 {
		t.Errorf("resources: mem %d quota %d period %d pids %d", *r.Memory.Limit, *r.CPU.Quota, *r.CPU.Period, r.Pids.Limit)
	}
}

func TestDefaultCgroupParent(t *testing.T) {
	a := Config{StateDir: "/var/lib/den/a"}.withDefaults().CgroupParent
	b := Config{StateDir: "/var/lib/den/b"}.withDefaults().CgroupParent
	if a == b || !strings.HasPrefix(a, "den/") || len(a) != len("den/")+8 {
		t.Errorf("default cgroup parents %q and %q: want distinct den/<8 hex>", a, b)
	}
}

func TestCheckID(t *testing.T) {
	for _, id := range []string{"a", "sb-1_x.y", "A9"} {
		if err := checkID(id); err != nil {
			t.Errorf("checkID(%q) = %v", id, err)
		}
	}
	err := checkID("../x")
	want := `invalid sandbox id "../x": want 1-128 of [A-Za-z0-9_.-], not starting with a punctuation mark`
	if errdefs.KindOf(err) != errdefs.InvalidArgument || err.Error() != want {
		t.Errorf("checkID(../x) = %v, want InvalidArgument %q", err, want)
	}
}

func TestOverlayOptions(t *testing.T) {
	p := paths{dir: "/s/sb"}
	got, err := overlayOptions([]string{"/l/top", "/l/base"}, p)
	if want := "lowerdir=/l/top:/l/base,upperdir=/s/sb/upper,workdir=/s/sb/work"; err != nil || got != want {
		t.Errorf("overlayOptions = %q, %v; want %q", got, err, want)
	}
	_, err = overlayOptions([]string{"/l/a:b"}, p)
	if want := `image layer "/l/a:b": want an absolute path without ':', ',' or '\'`; errdefs.KindOf(err) != errdefs.InvalidArgument || err.Error() != want {
		t.Errorf("overlayOptions with a colon = %v, want %q", err, want)
	}
}
