//go:build linux

package vminit

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// TestParseNetArg checks NetArg's value round-trips through FormatNetArg
// and that bad values are refused with what is wrong.
func TestParseNetArg(t *testing.T) {
	addr, gw, dns := netip.MustParsePrefix("172.31.255.254/30"), netip.MustParseAddr("172.31.255.253"), netip.MustParseAddr("10.88.0.1")
	arg := FormatNetArg(addr, gw, dns)
	if arg != "den.net=172.31.255.254/30,172.31.255.253,10.88.0.1" {
		t.Fatalf("FormatNetArg = %q", arg)
	}
	nc, err := parseNetArg(arg[len(NetArg)+1:])
	if err != nil || nc.addr != addr || nc.gateway != gw || nc.dns != dns {
		t.Fatalf("parseNetArg = %+v, %v", nc, err)
	}
	tests := []struct{ name, value, want string }{
		{"TooFew", "1.2.3.4/30,1.2.3.5", `den.net="1.2.3.4/30,1.2.3.5": want <address>/<bits>,<gateway>,<dns>`},
		{"NoBits", "1.2.3.4,1.2.3.5,1.1.1.1", `den.net="1.2.3.4,1.2.3.5,1.1.1.1": netip.ParsePrefix("1.2.3.4"): no '/'`},
		{"IPv6", "fd00::2/64,fd00::1,1.1.1.1", `den.net="fd00::2/64,fd00::1,1.1.1.1": IPv4 addresses only`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseNetArg(tt.value); err == nil || err.Error() != tt.want {
				t.Fatalf("parseNetArg(%q) = %v, want %q", tt.value, err, tt.want)
			}
		})
	}
}

// TestWriteResolvConf checks a link at the path is replaced by a file.
func TestWriteResolvConf(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "stub-resolv.conf")
	if err := os.WriteFile(target, []byte("nameserver 127.0.0.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "resolv.conf")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if err := writeResolvConf(path, netip.MustParseAddr("10.88.0.1")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("resolv.conf: %v, %v; want a file", fi, err)
	}
	got, _ := os.ReadFile(path)
	if string(got) != "nameserver 10.88.0.1\noptions edns0\n" {
		t.Errorf("resolv.conf = %q", got)
	}
	if old, _ := os.ReadFile(target); string(old) != "nameserver 127.0.0.53\n" {
		t.Errorf("the link's target changed: %q", old)
	}
}
