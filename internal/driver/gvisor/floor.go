package gvisor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// MeasureRawFloor times n iterations of the fastest raw runsc path to a
// first command: `runsc create` + `runsc start` of a bundle running sleep
// on rootfsDir (read-only, so nothing is written into it), then
// `runsc exec ID echo ok` until its output is read. The following
// `delete -force` is not timed. It is the floor den's create+first exec is
// compared to. platform is a runsc platform ("systrap", "ptrace").
func MeasureRawFloor(ctx context.Context, runscPath, rootfsDir, platform string, n int) ([]time.Duration, error) {
	dir, err := os.MkdirTemp("", "den-runsc-floor-")
	if err != nil {
		return nil, fmt.Errorf("measure runsc floor: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := writeFloorBundle(dir, rootfsDir); err != nil {
		return nil, fmt.Errorf("measure runsc floor: %w", err)
	}
	r := runsc{path: runscPath, root: filepath.Join(dir, "root")}
	var out []time.Duration
	for i := range n {
		d, err := floorOnce(ctx, r, dir, platform, fmt.Sprintf("floor-%d-%d", os.Getpid(), i))
		if err != nil {
			return out, fmt.Errorf("measure runsc floor: %w", err)
		}
		out = append(out, d)
	}
	return out, nil
}

// floorOnce is one timed create+start+exec, then an untimed delete.
func floorOnce(ctx context.Context, r runsc, bundle, platform, id string) (time.Duration, error) {
	flags := []string{"--platform=" + platform, "--network=none"}
	logPath := filepath.Join(bundle, "runsc.log")
	defer r.deleteForce(context.WithoutCancel(ctx), id) //nolint:errcheck // best effort; the temp root is removed after
	begin := time.Now()
	if err := r.detached(ctx, logPath, append(flags, "create", "--bundle", bundle, id)...); err != nil {
		return 0, err
	}
	if err := r.detached(ctx, logPath, append(flags, "start", id)...); err != nil {
		return 0, err
	}
	out, err := r.output(ctx, "exec", id, "/bin/echo", "ok")
	if err != nil {
		return 0, err
	}
	took := time.Since(begin)
	if strings.TrimSpace(string(out)) != "ok" {
		return 0, fmt.Errorf("runsc exec echo: unexpected output %q", out)
	}
	return took, nil
}

// writeFloorBundle writes a config.json running sleep on a read-only rootfs.
func writeFloorBundle(dir, rootfsDir string) error {
	spec := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: rootfsDir, Readonly: true},
		Process: &specs.Process{
			Args: []string{"/bin/sleep", "1000000"},
			Env:  []string{defaultPath},
			Cwd:  "/",
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs"},
		},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace},
			{Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
		}},
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600)
}
