package vmkernel

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// cpioEntry is one entry read back from a newc archive.
type cpioEntry struct {
	Name         string
	Mode         uint32
	Data         string
	Major, Minor uint32
}

// readCPIO parses a newc archive up to its trailer, checking alignment.
func readCPIO(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	field := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+6+8*i+8]), 16, 32)
		if err != nil {
			t.Fatalf("field %d at %d: %v", i, off, err)
		}
		return uint32(v)
	}
	for {
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("bad magic at %d: %q", off, b[off:off+6])
		}
		mode, size, major, minor, nameLen := field(1), int(field(6)), field(9), field(10), int(field(11))
		name := string(b[off+110 : off+110+nameLen-1])
		if b[off+110+nameLen-1] != 0 {
			t.Fatalf("name %q not NUL-terminated", name)
		}
		dataOff := (off + 110 + nameLen + 3) &^ 3
		if name == "TRAILER!!!" {
			return out
		}
		out = append(out, cpioEntry{Name: name, Mode: mode, Data: string(b[dataOff : dataOff+size]), Major: major, Minor: minor})
		off = (dataOff + size + 3) &^ 3
	}
}

func TestCPIORoundTrip(t *testing.T) {
	var buf bytes.Buffer
	c := &cpioWriter{w: &buf}
	c.dir(".", 0o755)
	c.chardev("dev/console", 0o600, 5, 1)
	c.file("init", 0o755, []byte("binary"))
	c.file("etc/a", 0o644, []byte("12345")) // odd sizes exercise the padding
	c.file("etc/empty", 0o644, nil)
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	want := []cpioEntry{
		{Name: ".", Mode: cpioDir | 0o755},
		{Name: "dev/console", Mode: cpioChr | 0o600, Major: 5, Minor: 1},
		{Name: "init", Mode: cpioFile | 0o755, Data: "binary"},
		{Name: "etc/a", Mode: cpioFile | 0o644, Data: "12345"},
		{Name: "etc/empty", Mode: cpioFile | 0o644},
	}
	if diff := cmp.Diff(want, readCPIO(t, buf.Bytes())); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not a multiple of 4", buf.Len())
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		less bool
	}{
		{"6.1.0-9-cloud-amd64", "6.1.0-47-cloud-amd64", true},
		{"6.1.0-47-cloud-amd64", "6.1.0-9-cloud-amd64", false},
		{"5.10.0-30-cloud-amd64", "6.1.0-1-cloud-amd64", true},
	} {
		if got := compareVersions(tt.a, tt.b) < 0; got != tt.less {
			t.Errorf("compareVersions(%q, %q) < 0 = %v, want %v", tt.a, tt.b, got, tt.less)
		}
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{"/x/virtio-mmio.ko": "virtio_mmio", "virtio_blk": "virtio_blk", "net-failover.ko": "net_failover"} {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
}
