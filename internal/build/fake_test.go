package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/errdefs"
)

// fakeImages is an image store whose layers are plain directories.
type fakeImages struct {
	dir string

	mu      sync.Mutex
	layers  map[string]string
	bases   map[string]Base
	created []createdImage
	leases  int
	commits int
}

type createdImage struct {
	Name    string
	Layers  []string
	Config  ImageConfig
	History []History
}

func newFakeImages(t *testing.T) *fakeImages {
	t.Helper()
	return &fakeImages{dir: t.TempDir(), layers: map[string]string{}, bases: map[string]Base{}}
}

// addImage records an image named ref with one layer per spec (bottom
// first); see writeSpec.
func (f *fakeImages) addImage(t *testing.T, ref string, cfg ImageConfig, specs ...map[string]string) Base {
	t.Helper()
	b := Base{Ref: ref, Config: cfg}
	for _, spec := range specs {
		dir, err := os.MkdirTemp(f.dir, "src-*")
		if err != nil {
			t.Fatal(err)
		}
		writeSpec(t, dir, spec)
		id, err := f.CommitLayer(context.Background(), dir, nil)
		if err != nil {
			t.Fatalf("commit layer of %s: %v", ref, err)
		}
		b.Layers = append(b.Layers, id)
	}
	f.mu.Lock()
	f.bases[ref] = b
	f.mu.Unlock()
	return b
}

func (f *fakeImages) Resolve(_ context.Context, ref string, _ bool, log io.Writer) (Base, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.bases[ref]
	if !ok {
		return Base{}, errdefs.New(errdefs.NotFound, "image %q not found", ref)
	}
	fmt.Fprintf(log, "resolved %s\n", ref)
	return b, nil
}

func (f *fakeImages) LayerDir(diffID string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.layers[diffID]
	if !ok {
		return "", errdefs.New(errdefs.NotFound, "layer %s not found", diffID)
	}
	return d, nil
}

func (f *fakeImages) CommitLayer(_ context.Context, dir string, exclude []string) (string, error) {
	dst, err := os.MkdirTemp(f.dir, "layer-*")
	if err != nil {
		return "", err
	}
	if err := rawCopy(dir, dst, "", exclude); err != nil {
		return "", err
	}
	sum, err := rawHash(dst)
	if err != nil {
		return "", err
	}
	id := "sha256:" + sum
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commits++
	if _, ok := f.layers[id]; ok {
		return id, os.RemoveAll(dst)
	}
	f.layers[id] = dst
	return id, nil
}

func (f *fakeImages) Create(_ context.Context, name string, layers []string, cfg ImageConfig, history []History) (string, error) {
	data, err := json.Marshal(createdImage{Layers: layers, Config: cfg, History: history})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created = append(f.created, createdImage{Name: name, Layers: layers, Config: cfg, History: history})
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

func (f *fakeImages) Lease([]string) func() {
	f.mu.Lock()
	f.leases++
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		f.leases--
		f.mu.Unlock()
	}
}

// removeLayer makes a layer vanish, as a garbage collection would.
func (f *fakeImages) removeLayer(t *testing.T, diffID string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := os.RemoveAll(f.layers[diffID]); err != nil {
		t.Fatal(err)
	}
	delete(f.layers, diffID)
}

func (f *fakeImages) last(t *testing.T) createdImage {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.created) == 0 {
		t.Fatal("no image created")
	}
	return f.created[len(f.created)-1]
}

// rawCopy copies the tree src into dst as it is (owners, modes, device
// nodes, xattrs, times), leaving out the relative paths in exclude.
func rawCopy(src, dst, rel string, exclude []string) error {
	entries, err := os.ReadDir(filepath.Join(src, rel))
	if err != nil {
		return err
	}
	for _, e := range entries {
		crel := path.Join(rel, e.Name())
		if slices.Contains(exclude, crel) {
			continue
		}
		sp, dp := filepath.Join(src, crel), filepath.Join(dst, crel)
		fi, err := os.Lstat(sp)
		if err != nil {
			return err
		}
		if err := rawCopyEntry(sp, dp, fi); err != nil {
			return err
		}
		if fi.IsDir() {
			if err := rawCopy(src, dst, crel, exclude); err != nil {
				return err
			}
		}
		if err := rawMeta(sp, dp, fi); err != nil {
			return err
		}
	}
	return nil
}

func rawCopyEntry(sp, dp string, fi fs.FileInfo) error {
	st := fi.Sys().(*syscall.Stat_t)
	switch {
	case fi.IsDir():
		return os.Mkdir(dp, 0o700)
	case fi.Mode().IsRegular():
		data, err := os.ReadFile(sp)
		if err != nil {
			return err
		}
		return os.WriteFile(dp, data, 0o600)
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(sp)
		if err != nil {
			return err
		}
		return os.Symlink(target, dp)
	default:
		return unix.Mknod(dp, st.Mode, int(st.Rdev))
	}
}

func rawMeta(sp, dp string, fi fs.FileInfo) error {
	st := fi.Sys().(*syscall.Stat_t)
	if err := os.Lchown(dp, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		if err := unix.Fchmodat(unix.AT_FDCWD, dp, st.Mode&0o7777, 0); err != nil {
			return err
		}
	}
	if isOpaque(sp) {
		if err := unix.Lsetxattr(dp, opaqueXattr, []byte("y"), 0); err != nil {
			return err
		}
	}
	return setMtime(dp, fi.ModTime())
}

// rawHash hashes a layer directory: paths, types, modes, owners, contents,
// link targets, device numbers and opaque markers.
func rawHash(dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%q %o %d:%d %d %v\n", rel, st.Mode, st.Uid, st.Gid, st.Rdev, isOpaque(p))
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%x\n", sha256.Sum256(data))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			fmt.Fprintf(h, "%q\n", target)
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

// writeSpec writes a tree into dir. Keys are paths; a key ending in "/" is
// a directory; values "->target" make symlinks, "<whiteout>" whiteouts,
// "<opaque>" (for a directory key) an opaque directory; other values are
// file contents. A key may end with "|mode|uid:gid" ("a.sh|755|1000:1000").
func writeSpec(t *testing.T, dir string, spec map[string]string) {
	t.Helper()
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range spec {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range keys {
		if err := writeSpecEntry(dir, k, spec[k]); err != nil {
			t.Fatalf("write %s: %v", k, err)
		}
	}
}

func writeSpecEntry(dir, key, value string) error {
	name, mode, uid, gid := parseSpecKey(key)
	p := filepath.Join(dir, filepath.FromSlash(strings.TrimSuffix(name, "/")))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	var err error
	switch {
	case strings.HasSuffix(name, "/"):
		if mode == 0 {
			mode = 0o755
		}
		if err = os.MkdirAll(p, 0o755); err == nil && value == "<opaque>" {
			err = unix.Lsetxattr(p, opaqueXattr, []byte("y"), 0)
		}
	case strings.HasPrefix(value, "->"):
		return os.Symlink(value[2:], p)
	case value == "<whiteout>":
		return unix.Mknod(p, unix.S_IFCHR, 0)
	default:
		if mode == 0 {
			mode = 0o644
		}
		err = os.WriteFile(p, []byte(value), 0o644)
	}
	if err != nil {
		return err
	}
	if err := os.Lchown(p, uid, gid); err != nil {
		return err
	}
	return os.Chmod(p, fs.FileMode(mode))
}

func parseSpecKey(key string) (name string, mode uint32, uid, gid int) {
	parts := strings.Split(key, "|")
	name = parts[0]
	if len(parts) > 1 {
		m, _ := strconv.ParseUint(parts[1], 8, 32)
		mode = uint32(m)
	}
	if len(parts) > 2 {
		u, g, _ := strings.Cut(parts[2], ":")
		uid, _ = strconv.Atoi(u)
		gid, _ = strconv.Atoi(g)
	}
	return name, mode, uid, gid
}

// fakeRunner interprets a tiny shell in the sandbox's stead: commands
// separated by "&&", ";" or newlines; "echo WORDS [>|>> FILE]", "touch F",
// "rm F" (a whiteout when F is in a lower layer), "mkdir [-p] D", "cat F",
// "exit N", "false", "true", "id" (the user), "pwd", "env". $VAR and ${VAR}
// are substituted from the environment. A here-document script (#!) runs
// its lines.
type fakeRunner struct {
	mu    sync.Mutex
	calls []RunSpec
}

func (f *fakeRunner) Run(ctx context.Context, spec RunSpec) (int, error) {
	f.mu.Lock()
	rec := spec
	rec.Output, rec.Upper = nil, ""
	rec.Layers = nil
	f.calls = append(f.calls, rec)
	f.mu.Unlock()
	sh := &fakeShell{spec: spec, env: map[string]string{},
		view:  &view{layers: append([]string{spec.Upper}, spec.Layers...), overlay: true},
		lower: &view{layers: spec.Layers, overlay: true}}
	// The sandbox's own files, which must not end up in layers.
	sh.mkdirAll(".den")
	sh.mkdirAll("tmp/.den-tmp-on-rootfs")
	os.WriteFile(filepath.Join(spec.Upper, ".den", "state"), []byte("x"), 0o644)
	for _, e := range spec.Env {
		k, v, _ := strings.Cut(e, "=")
		sh.env[k] = v
	}
	script := strings.Join(spec.Args, " ")
	if len(spec.Args) == 3 && spec.Args[1] == "-c" {
		script = spec.Args[2]
	}
	if data, err := sh.view.readFile(cleanRel(script)); err == nil && strings.HasPrefix(string(data), "#!") {
		_, script, _ = strings.Cut(string(data), "\n")
	}
	return sh.run(script), nil
}

func (f *fakeRunner) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

type fakeShell struct {
	spec  RunSpec
	env   map[string]string
	view  *view
	lower *view
}

func (sh *fakeShell) run(script string) int {
	script = strings.NewReplacer("&&", "\n", ";", "\n").Replace(script)
	for _, line := range strings.Split(script, "\n") {
		words := strings.Fields(os.Expand(line, func(k string) string { return sh.env[k] }))
		if len(words) == 0 {
			continue
		}
		if code := sh.command(words); code >= 0 {
			return code
		}
	}
	return 0
}

// command runs one command; it returns -1 to go on, else the exit code.
func (sh *fakeShell) command(w []string) int {
	out := sh.spec.Output
	switch w[0] {
	case "echo":
		return sh.echo(w[1:])
	case "touch":
		sh.write(w[1], "", false)
	case "rm":
		sh.remove(w[len(w)-1])
	case "mkdir":
		sh.mkdirAll(sh.rel(w[len(w)-1]))
	case "cat":
		data, err := sh.view.readFile(sh.rel(w[1]))
		if err != nil {
			fmt.Fprintf(out, "cat: %s: No such file or directory\n", w[1])
			return 1
		}
		out.Write(data)
	case "exit":
		n, _ := strconv.Atoi(w[1])
		return n
	case "false":
		return 1
	case "true":
	case "id":
		fmt.Fprintf(out, "user=%s\n", sh.spec.User)
	case "pwd":
		fmt.Fprintln(out, sh.spec.Dir)
	case "env":
		env := slices.Clone(sh.spec.Env)
		slices.Sort(env)
		fmt.Fprintln(out, strings.Join(env, "\n"))
	default:
		fmt.Fprintf(out, "sh: %s: not found\n", w[0])
		return 127
	}
	return -1
}

func (sh *fakeShell) echo(args []string) int {
	for i, a := range args {
		if a == ">" || a == ">>" {
			sh.write(args[i+1], strings.Join(args[:i], " ")+"\n", a == ">>")
			return -1
		}
	}
	fmt.Fprintln(sh.spec.Output, strings.Join(args, " "))
	return -1
}

func (sh *fakeShell) rel(p string) string {
	if !path.IsAbs(p) {
		p = path.Join(sh.spec.Dir, p)
	}
	return cleanRel(p)
}

func (sh *fakeShell) host(p string) string {
	return filepath.Join(sh.spec.Upper, filepath.FromSlash(sh.rel(p)))
}

func (sh *fakeShell) write(p, data string, appendTo bool) {
	if appendTo {
		old, _ := sh.view.readFile(sh.rel(p))
		data = string(old) + data
	}
	sh.mkdirAll(path.Dir(sh.rel(p)))
	h := sh.host(p)
	os.Remove(h)
	os.WriteFile(h, []byte(data), 0o644)
}

// mkdirAll makes rel a directory in upper, copying up the directories of
// the layers below as overlayfs does.
func (sh *fakeShell) mkdirAll(rel string) {
	w := newLayerWriter(sh.spec.Upper, sh.lower, nil, nil)
	if _, err := w.mkdirAll(rel, owner{}); err == nil {
		w.finish()
	}
}

func (sh *fakeShell) remove(p string) {
	h := sh.host(p)
	os.RemoveAll(h)
	if _, err := sh.lower.lookup(sh.rel(p)); err == nil {
		sh.mkdirAll(path.Dir(sh.rel(p)))
		unix.Mknod(h, unix.S_IFCHR, 0)
	}
}

// tree returns the merged filesystem of layers (bottom first) as
// path → description: "dir 755 0:0", "file 644 0:0 content", "link target".
func tree(t *testing.T, f *fakeImages, layers []string) map[string]string {
	t.Helper()
	var dirs []string
	for _, l := range slices.Backward(layers) {
		d, err := f.LayerDir(l)
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	v := &view{layers: dirs, overlay: true}
	out := map[string]string{}
	var walk func(n *node)
	walk = func(n *node) {
		names, err := v.readDir(n)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			c, err := v.child(n, name)
			if err != nil {
				t.Fatal(err)
			}
			out["/"+c.rel] = describe(t, c)
			if c.isDir() {
				walk(c)
			}
		}
	}
	walk(v.root())
	return out
}

func describe(t *testing.T, n *node) string {
	st := n.info.Sys().(*syscall.Stat_t)
	switch {
	case n.isDir():
		return fmt.Sprintf("dir %o %d:%d", st.Mode&0o7777, st.Uid, st.Gid)
	case n.isSymlink():
		target, _ := os.Readlink(n.host)
		return "link " + target
	case n.info.Mode().IsRegular():
		data, err := os.ReadFile(n.host)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("file %o %d:%d %s", st.Mode&0o7777, st.Uid, st.Gid, data)
	}
	return fmt.Sprintf("other %o", st.Mode)
}

// subset returns the entries of m under prefix.
func subset(m map[string]string, prefix string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if k == prefix || strings.HasPrefix(k, prefix+"/") {
			out[k] = v
		}
	}
	return out
}
