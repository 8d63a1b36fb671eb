package e2e

import (
	"archive/tar"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/denhq/den/internal/testenv"
)

// buildDockerfile is a multi-stage Dockerfile that uses every instruction
// den's builder supports.
const buildDockerfile = `# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE} AS builder
WORKDIR /src
COPY hello.txt .
RUN echo "built by stage one" > /src/out.txt && cat hello.txt >> /src/out.txt
RUN ["/bin/sh", "-c", "dmesg | head -n 1 > /src/kernel.txt"]

FROM busybox
ARG GREETING=hi
ENV GREETING=${GREETING} APP_HOME=/app
RUN echo 'app:x:1001:1001::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1001:' >> /etc/group && touch /etc/motd-to-delete
RUN rm /etc/motd-to-delete
COPY --from=builder --chown=app:app /src/out.txt /src/kernel.txt /app/
COPY data/ /app/data/
ADD archive.tar /app/unpacked/
WORKDIR /app
USER app
LABEL org.example.team=den
EXPOSE 8080
SHELL ["/bin/sh", "-c"]
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo main-ran > /tmp/main.out; sleep 1000"]
`

// writeBuildContext writes the build context of buildDockerfile into dir.
func writeBuildContext(t *testing.T, dir string) {
	t.Helper()
	files := map[string]string{
		"Dockerfile":          buildDockerfile,
		"hello.txt":           "hello from the context\n",
		"data/a.txt":          "a\n",
		"data/sub/b.txt":      "b\n",
		"ignored/secret.txt":  "must not be sent\n",
		".dockerignore":       "ignored\n",
		"unrelated-notes.txt": "not used by any COPY\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(filepath.Join(dir, "archive.tar"))
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	body := "from the tar\n"
	if err := tw.WriteHeader(&tar.Header{Name: "x.txt", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestBuildPushPullRun is the images issue's first acceptance item: build a
// multi-stage image from a Dockerfile, push it to a loopback registry,
// remove it locally, pull it into a fresh data dir and start a sandbox from
// it: ENV, WORKDIR, USER and files from both stages are as the Dockerfile
// says, and the RUN steps ran inside gVisor.
func TestBuildPushPullRun(t *testing.T) {
	a := startDen(t, "")
	reg := testenv.Registry(t, testenv.RegistryOptions{})
	ref := reg + "/e2e/app:v1"
	ctxDir := t.TempDir()
	writeBuildContext(t, ctxDir)

	out := a.mustDen("image", "build", "-t", ref, "--build-arg", "GREETING=hello", ctxDir)
	if !strings.Contains(out, "RUN echo 'app:x:1001") {
		t.Errorf("build log does not show the RUN step:\n%s", out)
	}
	again := a.mustDen("image", "build", "-t", ref, "--build-arg", "GREETING=hello", ctxDir)
	if strings.Count(again, "CACHED") < 4 {
		t.Errorf("rebuild without change: want every step CACHED, log:\n%s", again)
	}
	a.mustDen("image", "push", "--insecure", ref)
	a.mustDen("image", "rm", ref)
	if res := a.den(nil, "image", "inspect", ref); res.code == 0 {
		t.Fatalf("image still present after rm:\n%s", res.stdout)
	}

	b := startDen(t, "")
	b.mustDen("image", "pull", "--insecure", ref)
	script := `echo "greeting=$GREETING home=$APP_HOME"; echo "cwd=$(pwd)"; echo "user=$(id -un)";` +
		` cat /app/out.txt /app/kernel.txt /app/data/a.txt /app/data/sub/b.txt /app/unpacked/x.txt;` +
		` stat -c "owner=%U" /app/out.txt; test -e /etc/motd-to-delete && echo motd-present;` +
		// ENTRYPOINT+CMD runs as the sandbox's main process, beside the agent.
		` for i in $(seq 100); do test -s /tmp/main.out && break; sleep 0.05; done; cat /tmp/main.out; echo done`
	got := b.mustDen("run", ref, "--", "sh", "-c", script)
	for _, want := range []string{
		"greeting=hello home=/app", "cwd=/app", "user=app",
		"built by stage one", "hello from the context", "gVisor",
		"a\nb\nfrom the tar\n", "owner=app", "main-ran", "done",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("sandbox from the pulled image: output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "motd-present") {
		t.Errorf("a file the Dockerfile removed is present:\n%s", got)
	}
}

// TestBuildErrorsNameTheLine: an unknown instruction and a missing COPY
// source fail with the Dockerfile line; a failing RUN shows its output and
// exit code.
func TestBuildErrorsNameTheLine(t *testing.T) {
	d := startDen(t, "")
	cases := []struct {
		name, dockerfile string
		want             []string
	}{
		{"unknown instruction", "FROM busybox\nRUN true\nFROBNICATE x\n", []string{"Dockerfile:3", "FROBNICATE"}},
		{"missing COPY source", "FROM busybox\nCOPY nosuch.txt /x\n", []string{"Dockerfile:2", "nosuch.txt"}},
		{"failing RUN", "FROM busybox\nRUN echo about to fail && exit 7\n", []string{"Dockerfile:2", "about to fail", "exit code 7"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(c.dockerfile), 0o644); err != nil {
				t.Fatal(err)
			}
			res := d.den(nil, "image", "build", "-t", "broken", dir)
			if res.code == 0 {
				t.Fatalf("build succeeded:\n%s", res.stdout)
			}
			all := res.stdout + res.stderr
			for _, w := range c.want {
				if !strings.Contains(all, w) {
					t.Errorf("build output lacks %q:\nstdout: %s\nstderr: %s", w, res.stdout, res.stderr)
				}
			}
		})
	}
}
