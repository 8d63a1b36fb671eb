package qemu

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/denhq/den/internal/driver/drivertest"
	"github.com/denhq/den/internal/errdefs"
)

// TestCopyFileSparse copies a sparse file: the data arrives at its
// offsets, the size is kept and the holes stay holes.
func TestCopyFileSparse(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	const size = 64 << 20
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	chunks := map[int64][]byte{0: []byte("head"), 20 << 20: bytes.Repeat([]byte{7}, 1<<20), size - 3: []byte("end")}
	for off, b := range chunks {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	if err := copyFile(src, dst); err != nil {
		t.Fatalf("copyFile: %v", err)
	}
	want, _ := os.ReadFile(src)
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("copy differs from the source (err %v, %d bytes, want %d)", err, len(got), len(want))
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dst, &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > 8<<20 {
		t.Errorf("copy of a sparse file uses %d bytes on disk, want its holes kept", used)
	}
	if err := copyFile(src, dst); !os.IsExist(err) {
		t.Errorf("copyFile onto an existing file: %v, want it refused", err)
	}
}

// TestManifest writes a checkpoint manifest and reads it back, and checks
// the errors for incomplete and foreign directories.
func TestManifest(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{streamName, memoryName, diskName} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeManifest(dir, manifest{SandboxID: "a", Accel: "tcg", MemoryMB: 256, CPUs: 1}); err != nil {
		t.Fatal(err)
	}
	m, err := readManifest(dir)
	if err != nil || m.SandboxID != "a" || m.Files[memoryName] != int64(len(memoryName)) {
		t.Fatalf("readManifest = %+v, %v", m, err)
	}
	tests := []struct {
		name    string
		corrupt func(dir string) error
		want    string
	}{
		{"NoManifest", func(dir string) error { return os.Remove(filepath.Join(dir, manifestName)) }, "no complete checkpoint"},
		{"Truncated", func(dir string) error { return os.Truncate(filepath.Join(dir, memoryName), 1) }, "memory is missing or has the wrong size"},
		{"Missing", func(dir string) error { return os.Remove(filepath.Join(dir, diskName)) }, "disk.qcow2 is missing or has the wrong size"},
		{"Foreign", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, manifestName), []byte(`{"format":"x"}`), 0o600)
		}, "not a den QEMU checkpoint manifest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := t.TempDir()
			for _, name := range []string{streamName, memoryName, diskName, manifestName} {
				if err := copyFile(filepath.Join(dir, name), filepath.Join(d, name)); err != nil {
					t.Fatal(err)
				}
			}
			if err := tt.corrupt(d); err != nil {
				t.Fatal(err)
			}
			_, err := readManifest(d)
			if !errdefs.Is(err, errdefs.InvalidArgument) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("readManifest: %v, want InvalidArgument %q", err, tt.want)
			}
		})
	}
}

// TestSuspendTimings measures, for the test's 256 MiB sandbox, Suspend,
// Resume (until the agent answers) and Clone, a few times each, and
// logs them (docs/benchmarks.md records them; no timed assertions). It
// is opt-in: DEN_TEST_QEMU_SUSPEND_TIMINGS=1.
func TestSuspendTimings(t *testing.T) {
	if os.Getenv("DEN_TEST_QEMU_SUSPEND_TIMINGS") != "1" {
		t.Skip("set DEN_TEST_QEMU_SUSPEND_TIMINGS=1 to measure suspend, resume and clone of a VM")
	}
	d, spec := newTestDriver(t)
	spec.ID = "vm-timings"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := d.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = d.Destroy(context.Background(), spec.ID) })
	shell := func(id, script string) string {
		t.Helper()
		res, err := drivertest.Shell(ctx, d, id, script)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("shell %q in %s: %+v, %v", script, id, res, err)
		}
		return res.Stdout
	}
	shell(spec.ID, "head -c 67108864 /dev/urandom > /tmp/blob") // 64 MiB of page cache
	for i := range 3 {
		dir := filepath.Join(t.TempDir(), "ckpt")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		if err := d.Suspend(ctx, spec.ID, dir); err != nil {
			t.Fatalf("Suspend: %v", err)
		}
		suspended := time.Since(begin)
		begin = time.Now()
		if _, err := d.Resume(ctx, spec, dir); err != nil {
			t.Fatalf("Resume: %v", err)
		}
		resumed := time.Since(begin)
		clone := spec
		clone.ID = spec.ID + "-clone" + string(rune('a'+i))
		begin = time.Now()
		if _, err := d.Clone(ctx, clone, dir); err != nil {
			t.Fatalf("Clone: %v", err)
		}
		cloned := time.Since(begin)
		if got := shell(clone.ID, "hostname"); got != clone.ID+"\n" {
			t.Errorf("clone hostname %q", got)
		}
		var mem syscall.Stat_t
		_ = syscall.Stat(filepath.Join(dir, memoryName), &mem)
		t.Logf("cycle %d: suspend %v, resume to agent %v, clone to agent %v (memory file: %d MiB on disk)", i+1, suspended, resumed, cloned, mem.Blocks*512>>20)
		// A checkpoint of the running source, and a suspend and resume of
		// the clone, whose stream carries its RAM.
		cdir, sdir := filepath.Join(dir, "..", "running"), filepath.Join(dir, "..", "clone")
		for _, p := range []string{cdir, sdir} {
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		begin = time.Now()
		if err := d.Checkpoint(ctx, spec.ID, cdir); err != nil {
			t.Fatalf("Checkpoint: %v", err)
		}
		checkpointed := time.Since(begin)
		begin = time.Now()
		if err := d.Suspend(ctx, clone.ID, sdir); err != nil {
			t.Fatalf("Suspend of the clone: %v", err)
		}
		cloneSuspended := time.Since(begin)
		begin = time.Now()
		if _, err := d.Resume(ctx, clone, sdir); err != nil {
			t.Fatalf("Resume of the clone: %v", err)
		}
		cloneResumed := time.Since(begin)
		stream, _ := os.Stat(filepath.Join(sdir, streamName))
		t.Logf("cycle %d: checkpoint (VM runs on) %v; clone (RAM in the stream, %d MiB): suspend %v, resume to agent %v", i+1, checkpointed, stream.Size()>>20, cloneSuspended, cloneResumed)
		if err := d.Destroy(ctx, clone.ID); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCloneSuspendResume covers the checkpoints whose stream carries the
// RAM: a clone maps its checkpoint's memory file share=off, so its own
// suspend streams the RAM (no memory file), and both a resume and a clone
// of that checkpoint load it. A running process and a file survive each
// step.
func TestCloneSuspendResume(t *testing.T) {
	d, spec := newTestDriver(t)
	spec.ID = "vm-clone-suspend"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := d.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = d.Destroy(context.Background(), spec.ID) })
	shell := func(id, script string) string {
		t.Helper()
		res, err := drivertest.Shell(ctx, d, id, script)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("shell %q in %s: %+v, %v", script, id, res, err)
		}
		return res.Stdout
	}
	counter := func(id string) int {
		t.Helper()
		n, err := strconv.Atoi(strings.TrimSpace(shell(id, "cat /tmp/counter")))
		if err != nil {
			t.Fatalf("counter in %s: %v", id, err)
		}
		return n
	}
	// counts goes on when the counter of id is at least from and grows.
	counts := func(id string, from int) {
		t.Helper()
		now := counter(id)
		if now < from {
			t.Fatalf("counter in %s went back from %d to %d", id, from, now)
		}
		for deadline := time.Now().Add(time.Minute); counter(id) == now; {
			if time.Now().After(deadline) {
				t.Fatalf("counter in %s stopped at %d", id, now)
			}
		}
	}
	shell(spec.ID, "echo kept > /root/file; (i=0; while :; do i=$((i+1)); echo $i > /tmp/c.new; mv /tmp/c.new /tmp/counter; sleep 0.01; done) >/dev/null 2>&1 &")
	counts(spec.ID, 0)
	ckpt := func() string {
		dir := filepath.Join(t.TempDir(), "ckpt")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		return dir
	}

	dir1 := ckpt()
	if err := d.Checkpoint(ctx, spec.ID, dir1); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	c1 := spec
	c1.ID = "vm-clone-suspend-1"
	if _, err := d.Clone(ctx, c1, dir1); err != nil {
		t.Fatalf("Clone: %v", err)
	}
	t.Cleanup(func() { _ = d.Destroy(context.Background(), c1.ID) })

	dir2 := ckpt()
	if err := d.Suspend(ctx, c1.ID, dir2); err != nil {
		t.Fatalf("Suspend of the clone: %v", err)
	}
	m, err := readManifest(dir2)
	if err != nil || !m.RAMInStream {
		t.Fatalf("the clone's checkpoint: %+v, %v; want the RAM in the stream", m, err)
	}
	if _, err := os.Stat(filepath.Join(dir2, memoryName)); !os.IsNotExist(err) {
		t.Errorf("the clone's checkpoint has a memory file (%v)", err)
	}
	if _, err := d.Resume(ctx, c1, dir2); err != nil {
		t.Fatalf("Resume of the clone: %v", err)
	}
	c2 := spec
	c2.ID = "vm-clone-suspend-2"
	if _, err := d.Clone(ctx, c2, dir2); err != nil {
		t.Fatalf("Clone of the clone's checkpoint: %v", err)
	}
	t.Cleanup(func() { _ = d.Destroy(context.Background(), c2.ID) })
	for _, id := range []string{c1.ID, c2.ID} {
		if got := shell(id, "cat /root/file; hostname"); got != "kept\n"+id+"\n" {
			t.Errorf("%s: file and hostname %q", id, got)
		}
		counts(id, 0)
	}

	// The resumed clone's RAM is its own file again: a memory file.
	dir3 := ckpt()
	before := counter(c1.ID)
	if err := d.Suspend(ctx, c1.ID, dir3); err != nil {
		t.Fatalf("second Suspend of the clone: %v", err)
	}
	if m, err := readManifest(dir3); err != nil || m.RAMInStream {
		t.Fatalf("the resumed clone's checkpoint: %+v, %v; want a memory file", m, err)
	}
	if _, err := d.Resume(ctx, c1, dir3); err != nil {
		t.Fatalf("second Resume of the clone: %v", err)
	}
	counts(c1.ID, before)
}

// TestResumeCorruptStream resumes from a checkpoint whose manifest is
// intact but whose stream is not: QEMU refuses it, Resume fails with
// InvalidArgument and QEMU's reason, nothing is left running, the
// sandbox stays suspended and the good checkpoint still resumes it.
func TestResumeCorruptStream(t *testing.T) {
	d, spec := newTestDriver(t)
	spec.ID = "vm-corrupt-stream"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := d.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = d.Destroy(context.Background(), spec.ID) })
	dir := filepath.Join(t.TempDir(), "ckpt")
	bad := filepath.Join(t.TempDir(), "bad")
	for _, p := range []string{dir, bad} {
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Suspend(ctx, spec.ID, dir); err != nil {
		t.Fatalf("Suspend: %v", err)
	}
	for _, name := range []string{manifestName, memoryName, diskName, streamName} {
		if err := copyFile(filepath.Join(dir, name), filepath.Join(bad, name)); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(filepath.Join(bad, streamName), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte("Z"), 4096), 64); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = d.Resume(ctx, spec, bad)
	if !errdefs.Is(err, errdefs.InvalidArgument) || !strings.Contains(err.Error(), "did not load") {
		t.Fatalf("Resume from a corrupt stream: %v, want InvalidArgument: did not load", err)
	}
	if st, err := d.Status(ctx, spec.ID); err != nil || st.Reason != "suspended" {
		t.Fatalf("Status after the failed Resume: %+v, %v", st, err)
	}
	if left := leftovers(t, spec.ID); len(left) != 1 { // the sandbox's directory
		t.Errorf("after the failed Resume: %q, want only the sandbox's directory", left)
	}
	if _, err := d.Resume(ctx, spec, dir); err != nil {
		t.Fatalf("Resume from the good checkpoint: %v", err)
	}
	if res, err := drivertest.Shell(ctx, d, spec.ID, "echo up"); err != nil || res.Stdout != "up\n" {
		t.Fatalf("after Resume: %+v, %v", res, err)
	}
}

// TestSuspendOtherFileSystem suspends into directories on a tmpfs, not
// the state dir's file system: the files are copied, not renamed. On a
// tmpfs too small for them Suspend fails, leaves the directory empty and
// the VM running; on a large one it succeeds and Resume works.
func TestSuspendOtherFileSystem(t *testing.T) {
	d, spec := newTestDriver(t)
	spec.ID = "vm-other-fs"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	mount := func(size string) string {
		t.Helper()
		dir := t.TempDir()
		if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
			t.Skipf("mount a tmpfs: %v", err)
		}
		t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
		return dir
	}
	small, large := mount("8m"), mount("1g")
	if _, err := d.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = d.Destroy(context.Background(), spec.ID) })
	err := d.Suspend(ctx, spec.ID, small)
	if err == nil {
		t.Fatalf("Suspend into an 8 MiB tmpfs succeeded")
	}
	t.Logf("Suspend into an 8 MiB tmpfs: %v", err)
	if entries, _ := os.ReadDir(small); len(entries) != 0 {
		t.Errorf("a failed Suspend left %d files", len(entries))
	}
	if res, err := drivertest.Shell(ctx, d, spec.ID, "echo up > /root/up && cat /root/up"); err != nil || res.Stdout != "up\n" {
		t.Fatalf("after a failed Suspend: %+v, %v", res, err)
	}
	if err := d.Suspend(ctx, spec.ID, large); err != nil {
		t.Fatalf("Suspend into a tmpfs: %v", err)
	}
	if _, err := d.Resume(ctx, spec, large); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if res, err := drivertest.Shell(ctx, d, spec.ID, "cat /root/up"); err != nil || res.Stdout != "up\n" {
		t.Fatalf("after Resume: %+v, %v", res, err)
	}
}
