package gvisor

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/denhq/den/internal/errdefs"
)

// hostSetting is a host kernel setting gVisor's speed depends on, with
// the value runsc's own --host-settings=adjust would give it
// (runsc/hostsettings in the pinned gVisor). den applies these in New,
// before the first sandbox boots: runsc applies them only when a sandbox
// starts, after its Sentry already chose, at boot, whether to back
// application memory with huge pages.
type hostSetting struct {
	path    string
	purpose string
	// want returns the value to write, or "" when current is fine.
	want func(current string) (string, error)
}

var hostSettings = []hostSetting{
	{
		path:    "/sys/kernel/mm/transparent_hugepage/shmem_enabled",
		purpose: "huge pages for the Sentry's memory file: restoring 256 MiB of a process's memory takes about half as long",
		want: func(cur string) (string, error) {
			if thpMode(cur) == "never" {
				return "advise", nil
			}
			return "", nil
		},
	},
	{
		path:    "/sys/kernel/mm/transparent_hugepage/defrag",
		purpose: "no direct compaction on a page fault when no huge page is free",
		want: func(cur string) (string, error) {
			switch thpMode(cur) {
			case "madvise":
				return "never", nil
			case "defer+madvise":
				return "defer", nil
			}
			return "", nil
		},
	},
	{
		path:    "/proc/sys/vm/max_map_count",
		purpose: "fewer host VMA exhaustions",
		want: func(cur string) (string, error) {
			const recommended = 4194304
			n, err := strconv.Atoi(strings.TrimSpace(cur))
			if err != nil {
				return "", fmt.Errorf("parse %q: %w", cur, err)
			}
			if n >= recommended {
				return "", nil
			}
			return strconv.Itoa(recommended), nil
		},
	},
}

// thpMode is the selected value of a transparent_hugepage file: the one in
// brackets ("always [madvise] never" is "madvise"), or the whole trimmed
// text when none is.
func thpMode(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '['); i >= 0 {
		if j := strings.IndexByte(s[i:], ']'); j > 0 {
			return s[i+1 : i+j]
		}
	}
	return s
}

// writeSetting writes a host setting file.
func writeSetting(path, value string) error { return os.WriteFile(path, []byte(value), 0) }

// applyHostSettings checks the host settings under root ("/" on a real
// host) and, for policy adjust or enforce, sets with write those that
// differ from gVisor's recommendation. Only enforce fails, when one
// cannot be set.
func applyHostSettings(root, policy string, write func(path, value string) error, log *slog.Logger) error {
	if policy == "ignore" {
		return nil
	}
	for _, s := range hostSettings {
		path := filepath.Join(root, s.path)
		data, err := os.ReadFile(path)
		if err != nil {
			log.Warn("host setting not checked", "setting", s.path, "err", err)
			continue
		}
		cur := strings.TrimSpace(string(data))
		want, err := s.want(cur)
		if err != nil {
			log.Warn("host setting not checked", "setting", s.path, "err", err)
			continue
		}
		if want == "" {
			continue
		}
		if policy == "check" {
			log.Warn("host setting is not what gVisor recommends", "setting", s.path, "current", cur, "recommended", want, "purpose", s.purpose)
			continue
		}
		if err := write(path, want); err != nil {
			if policy == "enforce" {
				return errdefs.Wrap(errdefs.FailedPrecondition, err, "gvisor driver: set host setting %s to %q (--host-settings=enforce)", s.path, want)
			}
			log.Warn("host setting not adjusted", "setting", s.path, "current", cur, "recommended", want, "err", err)
			continue
		}
		log.Info("host setting adjusted to gVisor's recommendation", "setting", s.path, "from", thpMode(cur), "to", want, "purpose", s.purpose)
	}
	return nil
}
