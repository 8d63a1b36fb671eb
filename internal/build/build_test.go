package build

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const multiStage = `ARG BASE=base
FROM ${BASE} AS builder
ARG VERSION=1.0
ENV APP=demo OUT=/out
WORKDIR /src
COPY src/ ./
RUN mkdir -p $OUT && echo $APP-$VERSION > $OUT/version && cat main.txt

FROM scratch AS unused
COPY README.md /

FROM base
LABEL org.example.name="demo app" org.example.version=${VERSION:-none}
MAINTAINER Jane <jane@example.com>
COPY --from=builder --chown=app:staff --chmod=640 /out/version /app/
USER app
WORKDIR /app/data
EXPOSE 8080 53/udp
ENV MODE=prod
ENTRYPOINT ["/app/run"]
CMD serve --port 80
STOPSIGNAL SIGTERM
HEALTHCHECK CMD true
VOLUME /data
SHELL ["/bin/bash", "-c"]
RUN touch marker
`

func TestBuildMultiStageWithEveryInstruction(t *testing.T) {
	h := newHarness(t)
	h.files(map[string]string{"src/main.txt": "hello", "README.md": "readme"})
	res, log := h.mustBuild(multiStage, Options{Tags: []string{"demo:1"}})

	img := h.images.last(t)
	wantConfig := ImageConfig{
		Env:          []string{"PATH=/usr/bin:/bin", "MODE=prod"},
		WorkingDir:   "/app/data",
		User:         "app",
		Entrypoint:   []string{"/app/run"},
		Cmd:          []string{"/bin/sh", "-c", "serve --port 80"},
		Shell:        []string{"/bin/bash", "-c"},
		ExposedPorts: []string{"53/udp", "8080/tcp"},
		Labels: map[string]string{"org.example.name": "demo app", "org.example.version": "none",
			"maintainer": "Jane <jane@example.com>"},
		StopSignal: "SIGTERM",
	}
	if diff := cmp.Diff(wantConfig, img.Config); diff != "" {
		t.Errorf("image config (-want +got):\n%s", diff)
	}
	if img.Name != "demo:1" || len(img.Layers) != 4 {
		t.Errorf("image %q has %d layers, want demo:1 with 4 (base, COPY, WORKDIR, RUN)", img.Name, len(img.Layers))
	}
	wantTree := map[string]string{
		"/app":                    "dir 755 1000:50",
		"/app/version":            "file 640 1000:50 demo-1.0\n",
		"/app/data":               "dir 755 1000:1000",
		"/app/data/marker":        "file 644 0:0 ",
		"/existing":               "dir 755 0:0",
		"/home/app":               "dir 755 1000:1000",
		"/src":                    "<absent>",
		"/out":                    "<absent>",
		"/README.md":              "<absent>",
		"/tmp/.den-tmp-on-rootfs": "<absent>",
		"/.den":                   "<absent>",
	}
	got := tree(t, h.images, img.Layers)
	for p, want := range wantTree {
		v, ok := got[p]
		if !ok {
			v = "<absent>"
		}
		if v != want {
			t.Errorf("%s: got %q, want %q", p, v, want)
		}
	}

	wantLog := `#1 [builder 1/4] FROM base
#1 resolved base
#1 DONE
#2 [builder 2/4] WORKDIR /src
#2 DONE
#3 [builder 3/4] COPY src/ ./
#3 DONE
#4 [builder 4/4] RUN mkdir -p $OUT && echo $APP-$VERSION > $OUT/version && cat main.txt
#4 hello
#4 DONE
#5 [stage-2 1/4] FROM base
#5 DONE
#6 [stage-2 2/4] COPY --from=builder --chown=app:staff --chmod=640 /out/version /app/
#6 DONE
#7 [stage-2 3/4] WORKDIR /app/data
#7 DONE
NOTE: Dockerfile:23: HEALTHCHECK is ignored: den does not run health checks
NOTE: Dockerfile:24: VOLUME is ignored: den sandboxes have no volumes
#8 [stage-2 4/4] RUN touch marker
#8 DONE
#9 exporting to image
#9 writing image ` + res.ImageID + `
#9 naming to demo:1
#9 DONE
`
	if diff := cmp.Diff(wantLog, log); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}

	wantCalls := []RunSpec{
		{Args: []string{"/bin/sh", "-c", "mkdir -p $OUT && echo $APP-$VERSION > $OUT/version && cat main.txt"},
			Env: []string{"PATH=/usr/bin:/bin", "VERSION=1.0", "APP=demo", "OUT=/out"}, Dir: "/src", Network: "none"},
		{Args: []string{"/bin/bash", "-c", "touch marker"},
			Env: []string{"PATH=/usr/bin:/bin", "MODE=prod"}, Dir: "/app/data", User: "app", Network: "none"},
	}
	if diff := cmp.Diff(wantCalls, h.runner.calls); diff != "" {
		t.Errorf("runner calls (-want +got):\n%s", diff)
	}
	wantRes := &Result{ImageID: res.ImageID, Tags: []string{"demo:1"}, Steps: 8, RunSteps: 2}
	if diff := cmp.Diff(wantRes, res, cmpopts.IgnoreFields(Result{}, "Duration")); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}

	var history []string
	for _, hist := range img.History {
		history = append(history, hist.CreatedBy)
	}
	wantHistory := []string{
		"FROM base",
		"LABEL org.example.name=demo app org.example.version=none",
		"LABEL maintainer=Jane <jane@example.com>",
		"COPY --from=builder --chown=app:staff --chmod=640 /out/version /app/",
		"USER app",
		"WORKDIR /app/data",
		"EXPOSE 53/udp 8080/tcp",
		"ENV MODE=prod",
		`ENTRYPOINT ["/app/run"]`,
		`CMD ["/bin/sh","-c","serve --port 80"]`,
		"STOPSIGNAL SIGTERM",
		`SHELL ["/bin/bash","-c"]`,
		"RUN /bin/bash -c touch marker",
	}
	if diff := cmp.Diff(wantHistory, history); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	if h.images.leases != 0 {
		t.Errorf("%d leases still held after the build", h.images.leases)
	}
}

func TestTargetBuildsOnlyWhatItNeeds(t *testing.T) {
	h := newHarness(t)
	h.files(map[string]string{"src/main.txt": "hello", "README.md": "readme"})
	_, log := h.mustBuild(multiStage, Options{Target: "unused"})
	img := h.images.last(t)
	if diff := cmp.Diff(map[string]string{"/README.md": "file 644 0:0 readme"}, tree(t, h.images, img.Layers)); diff != "" {
		t.Errorf("tree of target unused (-want +got):\n%s", diff)
	}
	if strings.Contains(log, "builder") || h.runner.callCount() != 0 {
		t.Errorf("target unused built the builder stage:\n%s", log)
	}
	want := ImageConfig{Env: []string{defaultPathEnv}}
	if !cmp.Equal(want, img.Config) {
		t.Errorf("config of a scratch stage: %+v, want %+v", img.Config, want)
	}
}

func TestBuildArgs(t *testing.T) {
	const dockerfile = `ARG GLOBAL=g
ARG IMAGE=nosuch
FROM ${IMAGE}
RUN echo [$GLOBAL] > /g1
ARG GLOBAL
RUN echo $GLOBAL > /g2
ARG LOCAL=l1
ENV E=$LOCAL LOCAL=env
RUN echo $E > /e
ARG TARGETARCH
RUN env
`
	h := newHarness(t)
	_, log := h.mustBuild(dockerfile, Options{BuildArgs: map[string]string{
		"IMAGE": "base", "LOCAL": "cli", "HTTP_PROXY": "http://proxy:3128", "UNUSED": "x"}})
	got := tree(t, h.images, h.images.last(t).Layers)
	want := map[string]string{"/g1": "file 644 0:0 []\n", "/g2": "file 644 0:0 g\n", "/e": "file 644 0:0 cli\n"}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: got %q, want %q", p, got[p], w)
		}
	}
	lastEnv := h.runner.calls[3].Env
	wantEnv := []string{"PATH=/usr/bin:/bin", "GLOBAL=g", "LOCAL=env", "E=cli", "TARGETARCH=" + platformArgs()["TARGETARCH"], "HTTP_PROXY=http://proxy:3128"}
	if diff := cmp.Diff(wantEnv, lastEnv); diff != "" {
		t.Errorf("RUN environment (-want +got):\n%s", diff)
	}
	if !strings.Contains(log, "[Warning] One or more build-args [UNUSED] were not consumed\n") {
		t.Errorf("no warning about the unused build arg:\n%s", log)
	}
	// The proxy is not part of the cache key.
	res, _ := h.mustBuild(dockerfile, Options{BuildArgs: map[string]string{"IMAGE": "base", "LOCAL": "cli", "HTTP_PROXY": "http://other:3128"}})
	if res.RunSteps != 0 {
		t.Errorf("changing HTTP_PROXY ran %d steps again", res.RunSteps)
	}
	// A changed build arg is.
	res, _ = h.mustBuild(dockerfile, Options{BuildArgs: map[string]string{"IMAGE": "base", "LOCAL": "other"}})
	if res.RunSteps != 2 {
		t.Errorf("changing LOCAL ran %d steps again, want 2 (those after ARG LOCAL)", res.RunSteps)
	}
}

func TestHereDocuments(t *testing.T) {
	const dockerfile = `FROM base
RUN <<EOF
echo one > /one
echo two > /two
EOF
RUN <<EOF
#!/bin/fake
echo script > /script
EOF
ARG NAME=world
COPY <<EOT /greeting
hello $NAME
EOT
COPY <<'EOT' /literal
hello $NAME
EOT
`
	h := newHarness(t)
	h.mustBuild(dockerfile, Options{})
	got := tree(t, h.images, h.images.last(t).Layers)
	want := map[string]string{
		"/one": "file 644 0:0 one\n", "/two": "file 644 0:0 two\n", "/script": "file 644 0:0 script\n",
		"/greeting": "file 644 0:0 hello world\n", "/literal": "file 644 0:0 hello $NAME\n",
		"/.den-build": "",
	}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: got %q, want %q", p, got[p], w)
		}
	}
	if diff := cmp.Diff([]string{"/bin/sh", "-c", "/.den-build/heredoc/EOF"}, h.runner.calls[1].Args); diff != "" {
		t.Errorf("script here-document args (-want +got):\n%s", diff)
	}
}

func TestResultImageConfigInheritsFromStage(t *testing.T) {
	const dockerfile = `FROM base AS one
ENV A=1
USER app
WORKDIR /home/app
ARG SECRET=s
FROM one
RUN env
`
	h := newHarness(t)
	h.mustBuild(dockerfile, Options{})
	img := h.images.last(t)
	want := ImageConfig{Env: []string{"PATH=/usr/bin:/bin", "A=1"}, User: "app", WorkingDir: "/home/app", Cmd: []string{"/bin/sh"}}
	if diff := cmp.Diff(want, img.Config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if len(img.Layers) != 2 {
		t.Errorf("%d layers, want 2: WORKDIR of an existing directory adds none", len(img.Layers))
	}
	// ARGs end with their stage.
	if diff := cmp.Diff([]string{"PATH=/usr/bin:/bin", "A=1"}, h.runner.calls[0].Env); diff != "" {
		t.Errorf("RUN environment (-want +got):\n%s", diff)
	}
}

func TestExecFormAndPlatform(t *testing.T) {
	h := newHarness(t)
	_, log := h.mustBuild(`FROM --platform=linux/arm64 base
SHELL ["/bin/bash", "-c"]
RUN ["touch", "/exec"]
RUN touch /shell
`, Options{})
	var args [][]string
	for _, c := range h.runner.calls {
		args = append(args, c.Args)
	}
	if diff := cmp.Diff([][]string{{"touch", "/exec"}, {"/bin/bash", "-c", "touch /shell"}}, args); diff != "" {
		t.Errorf("RUN argv (-want +got):\n%s", diff)
	}
	if want := "#1 [1/3] FROM base\n#1 NOTE: --platform=linux/arm64 is ignored: den builds for the host platform\n"; !strings.HasPrefix(log, want) {
		t.Errorf("log does not start with %q:\n%s", want, log)
	}
	got := tree(t, h.images, h.images.last(t).Layers)
	if got["/exec"] == "" || got["/shell"] == "" {
		t.Errorf("files of RUN missing: %v", got)
	}
}
