package gvisor

import (
	"fmt"
	"path/filepath"
	"slices"
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
	s := ociSpec(cfg, driver.Spec{ID: "sb1", CPUs: 1.5, MemoryMB: 256, Image: driver.Image{User: "user"}}, p, "/s/guest/0123/den-guest", nil)
	if s.Hostname != "sb1" || s.Root.Path != "/s/sandboxes/sb1/rootfs" || s.Linux.CgroupsPath != "/den/sb1" {
		t.Errorf("hostname %q root %q cgroup %q", s.Hostname, s.Root.Path, s.Linux.CgroupsPath)
	}
	// 1.5 CPUs: the agent schedules Go code on 2 threads at most.
	wantArgs := []string{"/.den/den-guest", "--listen", "unix:/.den/run/guest.sock", "--default-user", "user", "--cpus", "2"}
	if diff := cmp.Diff(wantArgs, s.Process.Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	if args := guestArgs("", "", 0); slices.Contains(args, "--cpus") {
		t.Errorf("no CPU limit: args %q, want no --cpus", args)
	}
	if m := s.Mounts[3]; m.Destination != "/.den/den-guest" || m.Source != "/s/guest/0123/den-guest" {
		t.Errorf("guest binary mount %+v", m)
	}
	r := s.Linux.Resources
	if *r.Memory.Limit != 256<<20 || r.Pids.Limit != 4096 {
		t.Errorf("resources: mem %d pids %d", *r.Memory.Limit, r.Pids.Limit)
	}
	if r.CPU != nil {
		t.Errorf("resources.CPU = %+v, want none: den applies the CPU limit after the start (cpulimit.go)", r.CPU)
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
	tests := []struct {
		name string
		o    overlay
		want string
	}{
		{"private upper", overlay{lower: []string{"/l/top", "/l/base"}, upper: "/s/sb/upper", work: "/s/sb/work"},
			"lowerdir=/l/top:/l/base,upperdir=/s/sb/upper,workdir=/s/sb/work"},
		{"plain upper", overlay{lower: []string{"/s/sb/init", "/l/base"}, upper: "/u", work: "/s/sb/work", plainUpper: true},
			"lowerdir=/s/sb/init:/l/base,upperdir=/u,workdir=/s/sb/work,redirect_dir=off,metacopy=off,index=off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := tt.o.options(); err != nil || got != tt.want {
				t.Errorf("options = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	_, err := overlay{lower: []string{"/l/a:b"}, upper: "/u", work: "/w"}.options()
	if want := `image layer "/l/a:b": want an absolute path without ':', ',' or '\'`; errdefs.KindOf(err) != errdefs.InvalidArgument || err.Error() != want {
		t.Errorf("options with a colon = %v, want %q", err, want)
	}
}

func TestCheckUpperDirPath(t *testing.T) {
	for _, dir := range []string{"relative", "/a/../b", "/a:b", "/a,b", "/a\\b", "/a/"} {
		err := checkUpperDirPath(driver.Spec{ID: "sb", UpperDir: dir})
		want := fmt.Sprintf(`create sandbox sb: upper dir %q: want a clean absolute path without ':', ',' or '\'`, dir)
		if errdefs.KindOf(err) != errdefs.InvalidArgument || err == nil || err.Error() != want {
			t.Errorf("checkUpperDirPath(%q) = %v, want InvalidArgument %q", dir, err, want)
		}
	}
	for _, dir := range []string{"", "/", "/var/lib/den/build/upper"} {
		if err := checkUpperDirPath(driver.Spec{ID: "sb", UpperDir: dir}); err != nil {
			t.Errorf("checkUpperDirPath(%q) = %v", dir, err)
		}
	}
}
