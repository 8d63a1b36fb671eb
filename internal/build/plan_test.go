package build

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/internal/errdefs"
)

func TestParseDockerfile(t *testing.T) {
	const dockerfile = `# escape=\
ARG V=1
FROM --platform=linux/arm64 base:${V} AS Build
RUN ["echo", "exec"]
RUN echo \
    continued
COPY --from=x --chown=a:b --chmod=755 --link s1 s2 /d/
ADD --checksum=sha256:ab https://example.com/f /f
ENV A=1 B="two words"
ENV OLD form value
LABEL k=v
MAINTAINER me
EXPOSE 80 443/tcp
USER u
WORKDIR /w
CMD ["c"]
ENTRYPOINT e arg
SHELL ["/bin/bash", "-c"]
STOPSIGNAL SIGINT
ONBUILD RUN x
FROM scratch
`
	got := mustParse(t, dockerfile)
	info := func(line int, text string) StepInfo { return StepInfo{Line: line, Text: text} }
	want := &Plan{
		File:   "Dockerfile",
		Escape: '\\',
		Args:   []ArgDef{{Name: "V", Default: "1", HasDefault: true}},
		Stages: []Stage{{
			Name: "build", Base: "base:${V}", Platform: "linux/arm64", Line: 3,
			Text: "FROM --platform=linux/arm64 base:${V} AS Build",
			Steps: []Step{
				&RunStep{StepInfo: info(4, `RUN ["echo", "exec"]`), Command: []string{"echo", "exec"}, Exec: true},
				&RunStep{StepInfo: info(5, "RUN echo     continued"), Command: []string{"echo     continued"}},
				&CopyStep{StepInfo: info(7, "COPY --from=x --chown=a:b --chmod=755 --link s1 s2 /d/"),
					Sources: []string{"s1", "s2"}, Dest: "/d/", From: "x", Chown: "a:b", Chmod: "755"},
				&CopyStep{StepInfo: info(8, "ADD --checksum=sha256:ab https://example.com/f /f"), Add: true,
					Sources: []string{"https://example.com/f"}, Dest: "/f", Checksum: "sha256:ab"},
				&EnvStep{StepInfo: info(9, `ENV A=1 B="two words"`), Vars: []KeyValue{{"A", "1"}, {"B", `"two words"`}}},
				&EnvStep{StepInfo: info(10, "ENV OLD form value"), Vars: []KeyValue{{"OLD", "form value"}}},
				&LabelStep{StepInfo: info(11, "LABEL k=v"), Labels: []KeyValue{{"k", "v"}}},
				&LabelStep{StepInfo: StepInfo{Line: 12, Text: "MAINTAINER me", Literal: true}, Labels: []KeyValue{{"maintainer", "me"}}},
				&ExposeStep{StepInfo: info(13, "EXPOSE 80 443/tcp"), Ports: []string{"80", "443/tcp"}},
				&UserStep{StepInfo: info(14, "USER u"), User: "u"},
				&WorkdirStep{StepInfo: info(15, "WORKDIR /w"), Path: "/w"},
				&CmdStep{StepInfo: info(16, `CMD ["c"]`), Command: []string{"c"}, Exec: true},
				&EntrypointStep{StepInfo: info(17, "ENTRYPOINT e arg"), Command: []string{"e arg"}},
				&ShellStep{StepInfo: info(18, `SHELL ["/bin/bash", "-c"]`), Shell: []string{"/bin/bash", "-c"}},
				&StopSignalStep{StepInfo: info(19, "STOPSIGNAL SIGINT"), Signal: "SIGINT"},
				&NoteStep{StepInfo: info(20, "ONBUILD RUN x"), Note: "ONBUILD is ignored: den does not record build triggers"},
			},
		}, {Base: "scratch", Line: 21, Text: "FROM scratch"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
}

// TestBuildPlan builds a plan the way an E2B template frontend would.
func TestBuildPlan(t *testing.T) {
	h := newHarness(t)
	h.files(map[string]string{"files/app.py": "print(1)"})
	plan := Plan{
		Stages: []Stage{{Base: "base", Steps: []Step{
			&RunStep{StepInfo: StepInfo{Text: "RUN mkdir -p /srv"}, Command: []string{"mkdir -p /srv"}},
			&CopyStep{StepInfo: StepInfo{Text: "COPY files /srv", Literal: true}, Sources: []string{"files"}, Dest: "/srv/",
				Chown: "app", Chmod: "0640", ContentHash: "e2b-files-hash-1"},
			&EnvStep{StepInfo: StepInfo{Text: "ENV", Literal: true}, Vars: []KeyValue{{"PRICE", "$5"}}},
			&WorkdirStep{StepInfo: StepInfo{Text: "WORKDIR /srv"}, Path: "/srv"},
			&UserStep{StepInfo: StepInfo{Text: "USER app"}, User: "app"},
			&RunStep{StepInfo: StepInfo{Text: "RUN id"}, Command: []string{"id"}, User: "root"},
		}}},
	}
	var log bytes.Buffer
	res, err := h.b.BuildPlan(context.Background(), plan, Options{ContextDir: h.ctxDir, Tags: []string{"tpl"}, Log: &log})
	if err != nil {
		t.Fatalf("BuildPlan: %v\n%s", err, log.String())
	}
	img := h.images.last(t)
	if diff := cmp.Diff(map[string]string{"/srv": "dir 755 0:0", "/srv/app.py": "file 640 1000:1000 print(1)"},
		subset(tree(t, h.images, img.Layers), "/srv")); diff != "" {
		t.Errorf("tree (-want +got):\n%s", diff)
	}
	wantCfg := ImageConfig{Env: []string{"PATH=/usr/bin:/bin", "PRICE=$5"}, WorkingDir: "/srv", User: "app", Cmd: []string{"/bin/sh"}}
	if diff := cmp.Diff(wantCfg, img.Config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if got := h.runner.calls[1].User; got != "root" {
		t.Errorf("RUN with a user ran as %q", got)
	}
	if res.Steps != 5 || res.RunSteps != 2 {
		t.Errorf("result %+v", res)
	}
	// The files hash stands for the files: a change it does not reflect
	// is not seen.
	h.files(map[string]string{"files/app.py": "print(2)"})
	res, err = h.b.BuildPlan(context.Background(), plan, Options{ContextDir: h.ctxDir})
	if err != nil || res.RunSteps != 0 {
		t.Errorf("rebuild with the same files hash: %+v, %v", res, err)
	}
	plan.Stages[0].Steps[1].(*CopyStep).ContentHash = "e2b-files-hash-2"
	res, err = h.b.BuildPlan(context.Background(), plan, Options{ContextDir: h.ctxDir})
	if err != nil || res.RunSteps != 1 {
		t.Errorf("rebuild with a new files hash: %+v, %v", res, err)
	}
}

func TestBuildReadsTheDockerfileFromTheContext(t *testing.T) {
	h := newHarness(t)
	h.files(map[string]string{"Dockerfile": "FROM base\nCOPY Dockerfile /\n", "sub/other.Dockerfile": "FROM base\nRUN true\n"})
	if _, err := h.b.Build(context.Background(), Options{ContextDir: h.ctxDir}); err != nil {
		t.Fatalf("Build: %v", err)
	}
	if got := tree(t, h.images, h.images.last(t).Layers)["/Dockerfile"]; got != "file 644 0:0 FROM base\nCOPY Dockerfile /\n" {
		t.Errorf("/Dockerfile = %q", got)
	}
	if _, err := h.b.Build(context.Background(), Options{ContextDir: h.ctxDir, Dockerfile: "sub/other.Dockerfile"}); err != nil {
		t.Fatalf("Build -f sub/other.Dockerfile: %v", err)
	}
	_, err := h.b.Build(context.Background(), Options{ContextDir: h.ctxDir, Dockerfile: "nosuch"})
	if err == nil || err.Error() != "nosuch not found in the build context" || !errdefs.Is(err, errdefs.InvalidArgument) {
		t.Errorf("missing Dockerfile: %v", err)
	}
}

func TestNewValidatesAndCleans(t *testing.T) {
	work := t.TempDir()
	os.MkdirAll(filepath.Join(work, "build-123", "layer-1"), 0o755)
	_, err := New(Config{Images: newFakeImages(t), Runner: &fakeRunner{}, WorkDir: work, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if entries, _ := os.ReadDir(work); len(entries) != 0 {
		t.Errorf("leftovers in the work directory: %v", entries)
	}
	_, err = New(Config{Images: newFakeImages(t), WorkDir: work, CacheDir: work})
	if err == nil || err.Error() != "build config: Runner is required" || !errdefs.Is(err, errdefs.InvalidArgument) {
		t.Errorf("New without a runner: %v", err)
	}
}
