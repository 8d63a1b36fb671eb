// Package hostmem reads the host's memory figures from /proc/meminfo.
package hostmem

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Info is the host's memory, in MiB.
type Info struct {
	TotalMB     int64
	AvailableMB int64
}

// Read reads /proc/meminfo.
func Read() (Info, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return Info{}, err
	}
	defer f.Close()
	return parse(f)
}

// parse reads MemTotal and MemAvailable (kB) from a meminfo file.
func parse(r io.Reader) (Info, error) {
	var info Info
	found := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "MemTotal" && name != "MemAvailable") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err != nil {
			return Info{}, fmt.Errorf("meminfo: parse %s: %w", name, err)
		}
		if name == "MemTotal" {
			info.TotalMB = kb >> 10
		} else {
			info.AvailableMB = kb >> 10
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return Info{}, fmt.Errorf("meminfo: %w", err)
	}
	if found != 2 {
		return Info{}, fmt.Errorf("meminfo: MemTotal or MemAvailable missing")
	}
	return info, nil
}
