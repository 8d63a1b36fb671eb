package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"

	"github.com/denhq/den/internal/build"
	"github.com/denhq/den/internal/e2b"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/image"
)

// templateBuilder builds E2B templates with den's build engine: the SDK's
// steps become a one-stage build plan.
type templateBuilder struct {
	b      *build.Builder
	images *image.Store
}

// e2bBaseImages are E2B's names of its default base image; den's "base" is
// the same kind of image (Debian, bash, python3, node, user "user").
var e2bBaseImages = map[string]bool{"e2bdev/base": true, "e2bdev/base:latest": true, "e2bdev/code-interpreter": true}

// ensureUser adds E2B's default user to images that lack it, the way E2B's
// template builder does.
const ensureUser = `id -u ` + e2b.DefaultTemplateUser + ` >/dev/null 2>&1 && exit 0
useradd -m -s /bin/bash ` + e2b.DefaultTemplateUser + ` 2>/dev/null && exit 0
adduser -D -s /bin/sh ` + e2b.DefaultTemplateUser + ` 2>/dev/null && exit 0
echo '` + e2b.DefaultTemplateUser + `:x:1000:1000::/home/` + e2b.DefaultTemplateUser + `:/bin/sh' >> /etc/passwd &&
echo '` + e2b.DefaultTemplateUser + `:x:1000:' >> /etc/group &&
mkdir -p /home/` + e2b.DefaultTemplateUser + ` && chown 1000:1000 /home/` + e2b.DefaultTemplateUser

// runWrapper runs an E2B RUN step's command line the way E2B does (a bash
// login shell), falling back to sh in images without bash.
var runWrapper = []string{"/bin/sh", "-c", `if command -v bash >/dev/null 2>&1; then exec bash -l -c "$1"; fi; exec /bin/sh -c "$1"`, "sh"}

// Build implements e2b.TemplateBuilder.
func (t templateBuilder) Build(ctx context.Context, tb *e2b.TemplateBuild) error {
	plan := templatePlan(tb)
	contextDir := tb.ContextDir
	if _, err := os.Stat(contextDir); errors.Is(err, fs.ErrNotExist) {
		contextDir = "" // nothing uploaded: a template without COPY steps
	}
	_, err := t.b.BuildPlan(ctx, plan, build.Options{
		ContextDir: contextDir, Tags: tb.Names, NoCache: tb.Force, Pull: true, Log: tb.Log,
	})
	if err == nil {
		return nil
	}
	var se *build.StepError
	if errors.As(err, &se) {
		return &e2b.BuildStepError{Step: se.Line, Err: se.Err}
	}
	return &e2b.BuildStepError{Step: len(tb.Steps) + 1, Err: err}
}

// templatePlan is the build plan of a template: a prologue that gives the
// image E2B's default user and directory, then one step per SDK step
// (StepInfo.Line is the SDK step's number, for error reports).
func templatePlan(tb *e2b.TemplateBuild) build.Plan {
	base := tb.FromTemplate
	if base == "" {
		base = tb.FromImage
		if e2bBaseImages[base] {
			base = "base"
		}
	}
	lit := func(line int, text string) build.StepInfo {
		return build.StepInfo{Line: line, Text: text, Literal: true}
	}
	steps := []build.Step{
		&build.UserStep{StepInfo: lit(0, "USER root"), User: "root"},
		&build.RunStep{StepInfo: lit(0, "RUN add user "+e2b.DefaultTemplateUser), Command: []string{"/bin/sh", "-c", ensureUser}, Exec: true},
		&build.UserStep{StepInfo: lit(0, "USER "+e2b.DefaultTemplateUser), User: e2b.DefaultTemplateUser},
		&build.WorkdirStep{StepInfo: lit(0, "WORKDIR "+e2b.DefaultTemplateWorkdir), Path: e2b.DefaultTemplateWorkdir},
	}
	user := e2b.DefaultTemplateUser
	for i, s := range tb.Steps {
		info := lit(i+1, s.String())
		info.Force = s.Force
		switch s.Type {
		case e2b.StepRun:
			st := &build.RunStep{StepInfo: info, Command: append(append([]string{}, runWrapper...), s.Args[0]), Exec: true}
			if len(s.Args) > 1 {
				st.User = s.Args[1]
			}
			steps = append(steps, st)
		case e2b.StepCopy:
			st := &build.CopyStep{StepInfo: info, Sources: []string{path.Join(s.FilesHash, s.Args[0])}, Dest: s.Args[1],
				Chown: user, ContentHash: s.FilesHash}
			if len(s.Args) > 2 && s.Args[2] != "" {
				st.Chown = s.Args[2]
			}
			if len(s.Args) > 3 {
				st.Chmod = s.Args[3]
			}
			steps = append(steps, st)
		case e2b.StepEnv:
			st := &build.EnvStep{StepInfo: info}
			for j := 0; j+1 < len(s.Args); j += 2 {
				st.Vars = append(st.Vars, build.KeyValue{Key: s.Args[j], Value: s.Args[j+1]})
			}
			steps = append(steps, st)
		case e2b.StepWorkdir:
			steps = append(steps, &build.WorkdirStep{StepInfo: info, Path: s.Args[0]})
		case e2b.StepUser:
			user = s.Args[0]
			steps = append(steps, &build.UserStep{StepInfo: info, User: user})
		}
	}
	if tb.StartCmd != "" {
		steps = append(steps, &build.EntrypointStep{StepInfo: lit(len(tb.Steps)+1, "ENTRYPOINT "+tb.StartCmd), Command: []string{tb.StartCmd}})
	}
	var notes []string
	if tb.ReadyCmd != "" {
		notes = append(notes, fmt.Sprintf("ready command %q is not run at build time: den records no snapshot of a started template", tb.ReadyCmd))
	}
	return build.Plan{File: "template " + tb.TemplateID, Notes: notes,
		Stages: []build.Stage{{Base: base, Text: "FROM " + base, Steps: steps}}}
}

// Tag implements e2b.TemplateBuilder.
func (t templateBuilder) Tag(_ context.Context, img, name string) error {
	return t.images.Tag(img, name)
}

// Remove implements e2b.TemplateBuilder.
func (t templateBuilder) Remove(_ context.Context, name string) error {
	err := t.images.Remove(name)
	if err != nil && errdefs.IsNotFound(err) {
		return nil
	}
	return err
}
