// Package vmkernel provides the guest kernels of microVM sandboxes: it
// fetches a Debian cloud kernel package with apt (downloaded and unpacked,
// never installed on the host), keeps the kernel and the modules a guest
// needs, and builds the initramfs that boots into den's guest agent:
// its /init is den-guest, which loads the modules, mounts the root disk
// and switches to it (see internal/guest/vminit).
//
// Layout, under the store's directory:
//
//	<version>/vmlinuz               the kernel (bzImage)
//	<version>/modules/<name>.ko     the guest's modules and their dependencies
//	<version>/kernel.json           version, package, module load order
//	<version>/initramfs-<digest>.img  built per guest binary (sha256 prefix)
package vmkernel

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/fsutil"
)

// DefaultPackage is the Debian meta package of the cloud kernel.
const DefaultPackage = "linux-image-cloud-amd64"

// Kernel is one fetched guest kernel.
type Kernel struct {
	Version string `json:"version"`
	// Package is the Debian package it came from, with its version.
	Package string `json:"package"`
	// Modules are the module names in load order.
	Modules   []string  `json:"modules"`
	FetchedAt time.Time `json:"fetched_at"`
	// Dir is the kernel's directory (not stored).
	Dir string `json:"-"`
}

// Image is the path of the kernel image.
func (k Kernel) Image() string { return filepath.Join(k.Dir, "vmlinuz") }

// Store holds fetched kernels in a directory.
type Store struct{ dir string }

// Open returns the store in dir, creating it.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("kernel store: %w", err)
	}
	return &Store{dir: dir}, nil
}

// List returns the fetched kernels, newest version last.
func (s *Store) List() ([]Kernel, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list kernels: %w", err)
	}
	var out []Kernel
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		k, err := s.read(e.Name())
		if err != nil {
			continue // incomplete: a fetch that did not finish
		}
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b Kernel) int { return compareVersions(a.Version, b.Version) })
	return out, nil
}

// Get returns the kernel of version, or the newest when version is "".
// NotFound names `den kernel fetch`.
func (s *Store) Get(version string) (Kernel, error) {
	if version == "" {
		list, err := s.List()
		if err != nil {
			return Kernel{}, err
		}
		if len(list) == 0 {
			return Kernel{}, errdefs.New(errdefs.NotFound, "no guest kernel fetched: run `den kernel fetch`")
		}
		return list[len(list)-1], nil
	}
	k, err := s.read(version)
	if err != nil {
		return Kernel{}, errdefs.New(errdefs.NotFound, "guest kernel %s not fetched: run `den kernel fetch`", version)
	}
	return k, nil
}

func (s *Store) read(version string) (Kernel, error) {
	dir := filepath.Join(s.dir, version)
	data, err := os.ReadFile(filepath.Join(dir, "kernel.json"))
	if err != nil {
		return Kernel{}, err
	}
	var k Kernel
	if err := json.Unmarshal(data, &k); err != nil {
		return Kernel{}, fmt.Errorf("kernel %s: %w", version, err)
	}
	k.Dir = dir
	return k, nil
}

// Fetch downloads Debian package pkg (DefaultPackage when "": the meta
// package is resolved to the kernel package it depends on) with apt,
// unpacks it into a temporary directory and keeps the kernel and the
// guest's modules. A kernel already fetched is returned as it is. Lines
// of progress go to progress.
func (s *Store) Fetch(ctx context.Context, pkg string, progress io.Writer) (Kernel, error) {
	if pkg == "" {
		pkg = DefaultPackage
	}
	if progress == nil {
		progress = io.Discard
	}
	real, err := resolvePackage(ctx, pkg)
	if err != nil {
		return Kernel{}, err
	}
	tmp, err := os.MkdirTemp(s.dir, ".fetch-")
	if err != nil {
		return Kernel{}, fmt.Errorf("fetch kernel: %w", err)
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(progress, "downloading %s\n", real)
	if out, err := runIn(ctx, tmp, "apt-get", "download", "-q", real); err != nil {
		return Kernel{}, errdefs.Wrap(errdefs.Unavailable, err, "fetch kernel: apt-get download %s: %s (is the apt index current? run apt-get update)", real, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return Kernel{}, fmt.Errorf("fetch kernel: apt-get download %s left %d packages", real, len(debs))
	}
	fmt.Fprintf(progress, "unpacking %s\n", filepath.Base(debs[0]))
	root := filepath.Join(tmp, "root")
	if out, err := runIn(ctx, tmp, "dpkg-deb", "-x", debs[0], root); err != nil {
		return Kernel{}, fmt.Errorf("fetch kernel: dpkg-deb -x: %w: %s", err, out)
	}
	return s.install(root, strings.TrimSuffix(filepath.Base(debs[0]), ".deb"), progress)
}

// install keeps the kernel and the guest's modules of an unpacked kernel
// package at root.
func (s *Store) install(root, pkg string, progress io.Writer) (Kernel, error) {
	images, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(images) != 1 {
		return Kernel{}, fmt.Errorf("fetch kernel: package %s holds %d kernels (boot/vmlinuz-*), want 1", pkg, len(images))
	}
	version := strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")
	if k, err := s.read(version); err == nil {
		fmt.Fprintf(progress, "kernel %s is already fetched\n", version)
		return k, nil
	}
	modDir := filepath.Join(root, "lib", "modules", version)
	idx, err := indexModules(modDir)
	if err != nil {
		return Kernel{}, fmt.Errorf("fetch kernel: index modules: %w", err)
	}
	order, err := loadOrder(idx, builtinModules(modDir), GuestModules)
	if err != nil {
		return Kernel{}, fmt.Errorf("fetch kernel %s: %w", version, err)
	}
	stage := filepath.Join(filepath.Dir(root), "kernel")
	if err := os.MkdirAll(filepath.Join(stage, "modules"), 0o755); err != nil {
		return Kernel{}, err
	}
	if err := copyFile(images[0], filepath.Join(stage, "vmlinuz")); err != nil {
		return Kernel{}, fmt.Errorf("fetch kernel: %w", err)
	}
	k := Kernel{Version: version, Package: pkg, FetchedAt: time.Now().UTC()}
	for _, p := range order {
		name := moduleName(p)
		if err := copyFile(p, filepath.Join(stage, "modules", name+".ko")); err != nil {
			return Kernel{}, fmt.Errorf("fetch kernel: %w", err)
		}
		k.Modules = append(k.Modules, name)
	}
	data, _ := json.MarshalIndent(k, "", "  ")
	if err := os.WriteFile(filepath.Join(stage, "kernel.json"), data, 0o644); err != nil {
		return Kernel{}, err
	}
	final := filepath.Join(s.dir, version)
	if err := os.Rename(stage, final); err != nil {
		// Another fetch of the same kernel (a second den, or tests run in
		// parallel) finished first: keep its copy.
		if got, rerr := s.read(version); rerr == nil {
			return got, nil
		}
		return Kernel{}, fmt.Errorf("fetch kernel: %w", err)
	}
	k.Dir = final
	fmt.Fprintf(progress, "kernel %s ready: %d modules (%s)\n", version, len(k.Modules), strings.Join(k.Modules, " "))
	return k, nil
}

// dependsRE finds the kernel package a meta package depends on.
var dependsRE = regexp.MustCompile(`(?m)^\s*Depends:\s*(linux-image-[0-9][^\s<>]*)`)

// resolvePackage turns a meta package (linux-image-cloud-amd64) into the
// versioned kernel package it depends on; other names are returned as
// they are.
func resolvePackage(ctx context.Context, pkg string) (string, error) {
	if regexp.MustCompile(`^linux-image-[0-9]`).MatchString(pkg) {
		return pkg, nil
	}
	out, err := runIn(ctx, "", "apt-cache", "depends", pkg)
	if err != nil && os.Geteuid() == 0 {
		// No package index yet (a fresh machine, or lists cleaned): update
		// it once.
		if uout, uerr := runIn(ctx, "", "apt-get", "update", "-qq"); uerr != nil {
			return "", errdefs.Wrap(errdefs.Unavailable, uerr, "fetch kernel: apt-get update: %s", uout)
		}
		out, err = runIn(ctx, "", "apt-cache", "depends", pkg)
	}
	if err != nil {
		return "", errdefs.Wrap(errdefs.NotFound, err, "fetch kernel: apt-cache depends %s: %s (is the apt index current? run apt-get update)", pkg, out)
	}
	m := dependsRE.FindStringSubmatch(out)
	if m == nil {
		return "", errdefs.New(errdefs.NotFound, "fetch kernel: %s depends on no linux-image package", pkg)
	}
	return m[1], nil
}

// Initramfs returns the initramfs of k for guest binary guestBin (the
// static den-guest), building it once per binary: /init is the binary,
// /lib/modules holds k's modules and /etc/den-vm.json their load order.
func (s *Store) Initramfs(k Kernel, guestBin string) (string, error) {
	bin, err := os.ReadFile(guestBin)
	if err != nil {
		return "", fmt.Errorf("initramfs: read guest binary: %w", err)
	}
	sum := sha256.Sum256(bin)
	path := filepath.Join(k.Dir, "initramfs-"+hex.EncodeToString(sum[:6])+".img")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	c := &cpioWriter{w: zw}
	for _, d := range []string{".", "dev", "proc", "sys", "newroot", "etc", "lib", "lib/modules"} {
		c.dir(d, 0o755)
	}
	c.chardev("dev/console", 0o600, 5, 1)
	c.file("init", 0o755, bin)
	cfg, _ := json.Marshal(VMConfig{Modules: k.Modules})
	c.file("etc/den-vm.json", 0o644, cfg)
	for _, m := range k.Modules {
		data, err := os.ReadFile(filepath.Join(k.Dir, "modules", m+".ko"))
		if err != nil {
			return "", fmt.Errorf("initramfs: %w", err)
		}
		c.file("lib/modules/"+m+".ko", 0o644, data)
	}
	if err := c.close(); err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	// Concurrent creates may build the same initramfs at once: each
	// renames whole bytes into place.
	if err := fsutil.WriteFileAtomic(path, buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	return path, nil
}

// VMConfig is /etc/den-vm.json in the initramfs: what the guest's init
// does before it switches to the root disk.
type VMConfig struct {
	// Modules are the module files (/lib/modules/<name>.ko) to load, in order.
	Modules []string `json:"modules"`
}

func runIn(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// compareVersions orders kernel versions ("6.1.0-47-cloud-amd64") by
// their numbers.
func compareVersions(a, b string) int {
	na, nb := versionNumbers(a), versionNumbers(b)
	for i := 0; i < len(na) && i < len(nb); i++ {
		if na[i] != nb[i] {
			return na[i] - nb[i]
		}
	}
	if len(na) != len(nb) {
		return len(na) - len(nb)
	}
	return strings.Compare(a, b)
}

var numRE = regexp.MustCompile(`[0-9]+`)

func versionNumbers(v string) []int {
	var out []int
	for _, m := range numRE.FindAllString(v, -1) {
		n := 0
		fmt.Sscan(m, &n)
		out = append(out, n)
	}
	return out
}
