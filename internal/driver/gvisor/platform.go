package gvisor

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
)

// probePlatform returns "systrap" when a throwaway `runsc do /bin/true`
// works with it here, else "ptrace".
func probePlatform(ctx context.Context, r runsc, stateDir string, log *slog.Logger) string {
	dir, err := os.MkdirTemp(stateDir, "probe-")
	if err != nil {
		log.Warn("platform probe failed, using ptrace", "err", err)
		return PlatformPtrace
	}
	defer os.RemoveAll(dir)
	probe := runsc{path: r.path, root: filepath.Join(dir, "root")}
	defer probe.unmountNullNetNS() // before the RemoveAll above
	err = probe.detached(ctx, filepath.Join(dir, "log"),
		"--platform="+PlatformSystrap, "--network=none", "do", "/bin/true")
	if err != nil {
		log.Warn("systrap platform does not work here, using ptrace", "err", err)
		return PlatformPtrace
	}
	return PlatformSystrap
}
