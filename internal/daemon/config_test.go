package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/denhq/den/internal/fsutil"
)

func TestValidateNamesTheProblem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("Validate requires root first; the remaining cases need root")
	}
	dir := t.TempDir()
	runsc := filepath.Join(dir, "runsc")
	guest := filepath.Join(dir, "den-guest")
	for _, p := range []string{runsc, guest} {
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad listen", Config{Listen: "7070", RunscPath: runsc, GuestBinary: guest}, `--listen "7070" is not host:port`},
		{"bad platform", Config{Platform: "kvm", RunscPath: runsc, GuestBinary: guest}, `--platform "kvm" is unknown`},
		{"missing runsc", Config{RunscPath: filepath.Join(dir, "nope"), GuestBinary: guest}, "runsc not found at"},
		{"missing guest", Config{RunscPath: runsc, GuestBinary: filepath.Join(dir, "nope")}, "den-guest not found at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	ok := Config{RunscPath: runsc, GuestBinary: guest}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate of a good config: %v", err)
	}
	if ok.DataDir != "/var/lib/den" || ok.Listen != "127.0.0.1:7070" || ok.NodeID != "local" {
		t.Fatalf("defaults: %+v", ok)
	}
	rel := Config{RunscPath: runsc, GuestBinary: guest, DataDir: "rel/data"}
	if err := rel.Validate(); err != nil {
		t.Fatalf("Validate with a relative data dir: %v", err)
	}
	if wd, _ := os.Getwd(); rel.DataDir != filepath.Join(wd, "rel/data") {
		t.Errorf("relative --data-dir became %q, want it made absolute", rel.DataDir)
	}
}

func TestEnvFileRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "env")
	if err := fsutil.WriteFileAtomic(p, []byte("DEN_URL=http://x\nexport DEN_API_KEY=\"den_1\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := readEnvFile(p)
	if got["DEN_URL"] != "http://x" || got["DEN_API_KEY"] != "den_1" {
		t.Fatalf("readEnvFile = %v", got)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("env file mode: %v %v", fi.Mode(), err)
	}
}

func TestSandboxListenDefaultsNextToTheAPI(t *testing.T) {
	tests := map[string]string{
		"127.0.0.1:7070": "127.0.0.1:7071",
		"127.0.0.1:0":    "127.0.0.1:0",
		"[::1]:8000":     "[::1]:8001",
		"0.0.0.0:65535":  "0.0.0.0:0",
		"garbage":        "127.0.0.1:0",
	}
	for in, want := range tests {
		if got := nextPort(in); got != want {
			t.Errorf("nextPort(%q) = %q, want %q", in, got, want)
		}
	}
}
