package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/denhq/den/internal/image"
)

// TestImportedImageRuns imports a docker-archive with the CLI and runs a
// sandbox from it.
func TestImportedImageRuns(t *testing.T) {
	den := startDen(t, "")
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox-static not installed")
	}
	rootfs := t.TempDir()
	if err := image.WriteBusyboxRootfs(rootfs, bb); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc", "motd"), []byte("imported\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "img.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	if err := image.WriteDockerArchive(f, rootfs, "example.com/mine:1"); err != nil {
		t.Fatal(err)
	}
	f.Close()

	den.mustDen("image", "import", archive, "--name", "mine")
	if ls := den.mustDen("image", "ls"); !strings.Contains(ls, "mine") {
		t.Fatalf("den image ls does not list the import:\n%s", ls)
	}
	res := den.den(nil, "run", "mine", "--", "cat", "/etc/motd")
	if res.code != 0 || res.stdout != "imported\n" {
		t.Fatalf("run from imported image: code=%d stdout=%q stderr=%q", res.code, res.stdout, res.stderr)
	}
	res = den.den(nil, "create", "no-such-image")
	if res.code == 0 || !strings.Contains(res.stderr, "no-such-image") {
		t.Fatalf("create from an unknown image: code=%d stderr=%q", res.code, res.stderr)
	}
	den.mustDen("image", "rm", "mine")
}

// TestInstancesSideBySide runs two den up on port 0 with their own data dirs.
func TestInstancesSideBySide(t *testing.T) {
	a, b := startDen(t, ""), startDen(t, "")
	if a.url == b.url {
		t.Fatalf("both instances listen on %s", a.url)
	}
	ida, idb := a.create(), b.create()
	if ids := jsonIDs(a.mustDen("ls", "--json")); len(ids) != 1 || ids[0] != ida {
		t.Fatalf("instance A lists %v, want [%s]", ids, ida)
	}
	if ids := jsonIDs(b.mustDen("ls", "--json")); len(ids) != 1 || ids[0] != idb {
		t.Fatalf("instance B lists %v, want [%s]", ids, idb)
	}
	if res := a.den(nil, "exec", idb, "--", "true"); res.code == 0 {
		t.Fatal("instance A ran a command in instance B's sandbox")
	}
	env, err := os.ReadFile(filepath.Join(a.dataDir, "env"))
	if err != nil || !strings.Contains(string(env), "DEN_URL="+a.url) || !strings.Contains(string(env), "DEN_API_KEY="+a.key) {
		t.Fatalf("env file of A = %q (%v), want its URL and key", env, err)
	}
}
