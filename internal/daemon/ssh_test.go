package daemon

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDefaultSSHListen(t *testing.T) {
	for api, want := range map[string]string{
		"127.0.0.1:7070": "127.0.0.1:2222",
		"127.0.0.1:0":    "127.0.0.1:0", // tests and several dens: a free port
		"0.0.0.0:7070":   "0.0.0.0:2222",
		"garbage":        "127.0.0.1:2222",
	} {
		if got := defaultSSHListen(api); got != want {
			t.Errorf("defaultSSHListen(%q) = %q, want %q", api, got, want)
		}
	}
}

func TestValidateSSHListen(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("Validate requires root")
	}
	dir := t.TempDir()
	runsc, guest := filepath.Join(dir, "runsc"), filepath.Join(dir, "den-guest")
	for _, p := range []string{runsc, guest} {
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	off := Config{RunscPath: runsc, GuestBinary: guest, SSHListen: "off"}
	if err := off.Validate(); err != nil || off.SSHListen != "" {
		t.Fatalf("--ssh-listen off: %q, %v", off.SSHListen, err)
	}
	bad := Config{RunscPath: runsc, GuestBinary: guest, SSHListen: "2222"}
	if err := bad.Validate(); err == nil || err.Error() != `--ssh-listen "2222" is not host:port (e.g. 127.0.0.1:2222) or off` {
		t.Fatalf("--ssh-listen 2222: %v", err)
	}
}
