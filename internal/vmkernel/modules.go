package vmkernel

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// GuestModules are the modules a microVM guest loads from its initramfs:
// the virtio-mmio transport (devices are found through ACPI), the root
// disk, the agent's channel, the network and overlayfs. Their
// dependencies are added.
var GuestModules = []string{"virtio_mmio", "virtio_blk", "virtio_console", "virtio_net", "overlay"}

// moduleName is the canonical name of a module: dashes are underscores,
// as the kernel treats them.
func moduleName(s string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(s), ".ko"), "-", "_")
}

// indexModules maps module names to their .ko files under dir.
func indexModules(dir string) (map[string]string, error) {
	idx := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && strings.HasSuffix(p, ".ko") {
			idx[moduleName(p)] = p
		}
		return nil
	})
	return idx, err
}

// moduleDepends reads the "depends=" entry of a module's .modinfo.
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", filepath.Base(path), err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("read module %s: no .modinfo section", filepath.Base(path))
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", filepath.Base(path), err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					deps = append(deps, moduleName(d))
				}
			}
			return deps, nil
		}
	}
	return nil, nil
}

// loadOrder returns the files of wanted and their dependencies, each after
// its dependencies. A module the index lacks is an error, except for
// built-in ones: a wanted module that is neither a file nor in builtin.
func loadOrder(idx map[string]string, builtin map[string]bool, wanted []string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name, from string) error
	visit = func(name, from string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("modules: dependency cycle at %s", name)
		case 2:
			return nil
		}
		path, ok := idx[name]
		if !ok {
			if builtin[name] {
				state[name] = 2
				return nil
			}
			return fmt.Errorf("modules: %s (needed by %s) is neither a module file nor built in", name, from)
		}
		state[name] = 1
		deps, err := moduleDepends(path)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, path)
		return nil
	}
	for _, w := range wanted {
		if err := visit(moduleName(w), "the guest"); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// builtinModules reads modules.builtin of a kernel's module dir (names of
// modules compiled into the kernel); none when it is missing.
func builtinModules(modDir string) map[string]bool {
	out := map[string]bool{}
	data, err := os.ReadFile(filepath.Join(modDir, "modules.builtin"))
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out[moduleName(line)] = true
		}
	}
	return out
}
