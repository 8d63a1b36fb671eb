package hostmem

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	info, err := parse(strings.NewReader("MemTotal:       24576000 kB\nMemFree:  100 kB\nMemAvailable:   20480000 kB\n"))
	if err != nil || info.TotalMB != 24000 || info.AvailableMB != 20000 {
		t.Fatalf("parse = %+v, %v; want 24000 and 20000 MiB", info, err)
	}
	if _, err := parse(strings.NewReader("MemTotal: 1 kB\n")); err == nil {
		t.Error("parse of a file without MemAvailable succeeded")
	}
	if _, err := parse(strings.NewReader("MemTotal: x kB\nMemAvailable: 1 kB\n")); err == nil {
		t.Error("parse of a bad number succeeded")
	}
	if info, err := Read(); err != nil || info.TotalMB <= 0 || info.AvailableMB <= 0 {
		t.Errorf("Read = %+v, %v", info, err)
	}
}
